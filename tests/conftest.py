"""Fixtures shared by every tier: AWS pointed at moto, and one tiny real seed model per session."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from maas.aws_clients import s3_client, s3_transfer_client
from maas.config import Settings
from maas.registry import Manifest, ModelRegistry
from maas.service.inference import InferenceService

if TYPE_CHECKING:
    from maas.training import TrainedModel

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "events"
TEST_BUCKET = "maas-test-models"
# Small enough to train in about a second, big enough to be a real, non-trivial model.
TINY_SEED_OVERRIDES = {"epochs": 3}


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials everywhere, so no test can ever reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MAAS_BUCKET", "MAAS_PREFIX", "MAAS_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    # Each test is a fresh container: a client cached by an earlier test holds that test's credentials
    # (or none, for a test that ran without them) and its endpoint.
    s3_client.cache_clear()
    s3_transfer_client.cache_clear()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=TEST_BUCKET)
        yield client


@pytest.fixture
def registry(s3: Any) -> ModelRegistry:
    return ModelRegistry(s3, TEST_BUCKET)


@pytest.fixture(scope="session")
def seed_model() -> TrainedModel:
    from maas.training import train_recipe

    return train_recipe("seed-mlp", TINY_SEED_OVERRIDES)


@pytest.fixture
def published_seed(registry: ModelRegistry, seed_model: TrainedModel) -> Manifest:
    from maas.training import publish_trained

    return publish_trained(seed_model, registry)


@pytest.fixture
def service(registry: ModelRegistry) -> InferenceService:
    return InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))


class JsonLogs:
    """The structured log lines the process writes, formatted exactly as Lambda would ship them."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    # Powertools binds its handler to the stdout of import time, which pytest's capture does not see.
    from maas.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std_logger = logging.getLogger(logger.name)
    std_logger.addHandler(handler)
    try:
        yield JsonLogs(stream)
    finally:
        std_logger.removeHandler(handler)


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def load_function_module(function: str) -> ModuleType:
    """Import functions/<function>/app.py afresh, as Lambda would in a new container."""
    path = ROOT / "functions" / function / "app.py"
    module_name = f"maas_test_function_{function}_{os.urandom(4).hex()}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
