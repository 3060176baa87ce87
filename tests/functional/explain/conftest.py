"""The tiny digits CNN (trained once per session by the root conftest), published and served with seed-mlp."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from maas.registry import Manifest, ModelRegistry
from tests.support.functions import start_function

if TYPE_CHECKING:
    from maas.training import TrainedModel


@pytest.fixture
def published_digits(registry: ModelRegistry, digits_model: TrainedModel) -> Manifest:
    from maas.training import publish_trained

    return publish_trained(digits_model, registry)


@pytest.fixture
def explain_function(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest, published_digits: Manifest
) -> ModuleType:
    """functions/infer/app.py imported fresh, as Lambda would start it, over a bucket holding both models."""
    return start_function(monkeypatch, "infer")
