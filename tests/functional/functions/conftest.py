"""The functions as Lambda runs them: app.py imported fresh, over a moto bucket holding seed-mlp."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from maas.registry import Manifest
from tests.support.functions import start_function


@pytest.fixture
def infer_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "infer")


@pytest.fixture
def batch_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "batch")


@pytest.fixture
def async_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "async")
