"""The functions as Lambda runs them: app.py imported fresh, over a moto bucket holding seed-mlp (and, for
the generate function, the tiny test decoder)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from maas.registry import Manifest, ModelRegistry
from tests.support.functions import start_function
from tests.support.llm import publish_tiny_llm


@pytest.fixture
def infer_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "infer")


@pytest.fixture
def batch_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "batch")


@pytest.fixture
def async_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "async")


@pytest.fixture
def published_llm(registry: ModelRegistry) -> Manifest:
    """The tiny test decoder (random weights, SmolLM2's architecture), published as tiny-llm v1."""
    return publish_tiny_llm(registry)


@pytest.fixture
def generate_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest) -> ModuleType:
    return start_function(monkeypatch, "generate", MAAS_INTRA_OP_THREADS="1")
