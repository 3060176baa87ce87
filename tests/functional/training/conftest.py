"""Models beyond the root conftest's `seed_model`: a different seed and the external-data layout."""

from __future__ import annotations

import pytest

from maas.training import TrainedModel, train_recipe
from tests.support.models import TINY_SEED_OVERRIDES


@pytest.fixture(scope="session")
def other_seed_model() -> TrainedModel:
    return train_recipe("seed-mlp", {**TINY_SEED_OVERRIDES, "seed": 1})


@pytest.fixture(scope="session")
def external_data_model() -> TrainedModel:
    return train_recipe("seed-mlp", {**TINY_SEED_OVERRIDES, "external_data": True})
