"""The infer function as Lambda runs it: app.py imported fresh, over a moto bucket holding seed-mlp."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from maas.registry import Manifest
from tests.conftest import TEST_BUCKET, load_function_module


@pytest.fixture
def infer_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    monkeypatch.setenv("MAAS_BUCKET", TEST_BUCKET)
    monkeypatch.setenv("MAAS_PROVIDER", "cpu")
    return load_function_module("infer")


@pytest.fixture
def batch_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    monkeypatch.setenv("MAAS_BUCKET", TEST_BUCKET)
    monkeypatch.setenv("MAAS_PROVIDER", "cpu")
    return load_function_module("batch")


@pytest.fixture
def async_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    monkeypatch.setenv("MAAS_BUCKET", TEST_BUCKET)
    monkeypatch.setenv("MAAS_PROVIDER", "cpu")
    return load_function_module("async")
