"""A tiny real digits CNN trained once per session, and the infer function serving it beside seed-mlp."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from maas.registry import Manifest, ModelRegistry
from tests.conftest import TEST_BUCKET, load_function_module

if TYPE_CHECKING:
    from maas.training import TrainedModel

# Trains in about 2 s on one core and reaches about 0.9 test accuracy: accurate enough that its
# attributions mean something, and non-linear (convolutions, BatchNorm, ReLU), unlike the seed MLP.
TINY_DIGITS_OVERRIDES = {"epochs": 6, "width": 12, "depth": 1, "progress": False}


@pytest.fixture(scope="session")
def digits_model() -> TrainedModel:
    from maas.training import train_recipe

    return train_recipe("digits-resnet", TINY_DIGITS_OVERRIDES)


@pytest.fixture
def published_digits(registry: ModelRegistry, digits_model: TrainedModel) -> Manifest:
    from maas.training import publish_trained

    return publish_trained(digits_model, registry)


@pytest.fixture
def explain_function(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest, published_digits: Manifest
) -> ModuleType:
    """functions/infer/app.py imported fresh, as Lambda would start it, over a bucket holding both models."""
    monkeypatch.setenv("MAAS_BUCKET", TEST_BUCKET)
    monkeypatch.setenv("MAAS_PROVIDER", "cpu")
    return load_function_module("infer")
