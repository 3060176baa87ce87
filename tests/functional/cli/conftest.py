"""The CLI pointed at the moto bucket, as a user's shell would point it at theirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maas import aws_clients
from maas.registry import ModelRegistry
from tests.support.functions import set_function_env


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The CLI's settings pointed at the test bucket, and the test's own folder as the working directory,
    where a command's default output (a heatmap) lands. The autouse fake-AWS fixture has already dropped any
    boto3 client cached before; the one the CLI caches here holds moto's endpoint, so it goes too."""
    set_function_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    yield
    aws_clients.s3_client.cache_clear()


@pytest.fixture
def cli_registry(registry: ModelRegistry, cli_env: None) -> ModelRegistry:
    """The moto registry the CLI reads and writes."""
    return registry
