"""Fixtures shared by every tier: AWS pointed at moto, and one tiny real seed model per session.

Fixtures only: what they stand on lives in tests/support, which tests import directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from maas.config import Settings
from maas.registry import Manifest, ModelRegistry
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET, moto_bucket, use_fake_aws
from tests.support.logs import JsonLogs, captured_json_logs
from tests.support.models import TINY_DIGITS_OVERRIDES, TINY_SEED_OVERRIDES

if TYPE_CHECKING:
    from maas.training import TrainedModel


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials everywhere, so no test can ever reach a real AWS account."""
    use_fake_aws(monkeypatch)


@pytest.fixture(autouse=True)
def local_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The local data folder (kept runs, a stack's store) in a temporary folder, never the checkout's
    `.maas/`: a test that does not choose one must not write into the developer's."""
    monkeypatch.setenv("MAAS_DATA_DIR", str(tmp_path_factory.mktemp("maas-data")))


@pytest.fixture
def s3() -> Iterator[Any]:
    with moto_bucket() as client:
        yield client


@pytest.fixture
def registry(s3: Any) -> ModelRegistry:
    return ModelRegistry(s3, TEST_BUCKET)


@pytest.fixture(scope="session")
def seed_model() -> TrainedModel:
    from maas.training import train_recipe

    return train_recipe("seed-mlp", TINY_SEED_OVERRIDES)


@pytest.fixture(scope="session")
def digits_model() -> TrainedModel:
    """The digits-resnet recipe at TINY_DIGITS_OVERRIDES: a real image classifier, shared by the explain and
    browser tiers so a worker trains it once."""
    from maas.training import train_recipe

    return train_recipe("digits-resnet", TINY_DIGITS_OVERRIDES)


@pytest.fixture
def published_seed(registry: ModelRegistry, seed_model: TrainedModel) -> Manifest:
    from maas.training import publish_trained

    return publish_trained(seed_model, registry)


@pytest.fixture
def service(registry: ModelRegistry) -> InferenceService:
    return InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    with captured_json_logs() as logs:
        yield logs
