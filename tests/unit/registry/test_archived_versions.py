"""Archived versions: never chosen for you, always served when you name them.

As with MLflow's archived stage, an archived version stays loadable by its number, so a reproduction, an
audit or a pinned client keeps working. It is never picked implicitly: `latest` and the default reference
(with no default alias set) skip it, no alias or canary may be moved onto it, a promotion refuses it, and a
version an alias points at cannot be archived.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest

from maas.config import Settings
from maas.errors import MaasError, NotFound
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import ModelRef, ModelRegistry
from maas.registry.admin import PromotionRefused, RegistryAdmin, VersionInUse
from maas.registry.documents import CanarySplit
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET
from tests.support.registry import publish

if TYPE_CHECKING:
    from maas.training import TrainedModel


@pytest.fixture
def admin(registry: ModelRegistry) -> RegistryAdmin:
    """v1, v2 and v3, with v3, the newest, archived."""
    for payload in (b"1", b"2", b"3"):
        publish(registry, payload)
    admin = RegistryAdmin(registry)
    admin.archive("m", 3)
    return admin


@pytest.mark.parametrize(
    ("reference", "version"),
    [
        (ModelRef("m", version=3), 3),
        (ModelRef("m", version=2), 2),
        (ModelRef("m", alias="latest"), 2),
        (ModelRef("m"), 2),
    ],
    ids=["pinned archived", "pinned ready", "latest", "default without an alias"],
)
def test_only_a_pin_reaches_an_archived_version(
    admin: RegistryAdmin, reference: ModelRef, version: int
) -> None:
    assert admin.registry.resolve(reference) == version


ACTIONS: dict[str, tuple[Callable[[RegistryAdmin], object], type[MaasError], str]] = {
    "set an alias": (lambda a: a.set_alias("m", "production", 3), VersionInUse, "got archived v3"),
    "set a canary": (
        lambda a: a.set_alias("m", "production", 1, canary=CanarySplit(version=3, weight=0.1)),
        VersionInUse,
        "got archived v3",
    ),
    "promote": (lambda a: a.promote("m", 3), PromotionRefused, "the version is archived"),
    "promote with force": (
        lambda a: a.promote("m", 3, force=True, reason="try"),
        PromotionRefused,
        "the version is archived",
    ),
}


@pytest.mark.parametrize("action", ACTIONS, ids=str)
def test_nothing_moves_an_alias_onto_an_archived_version(admin: RegistryAdmin, action: str) -> None:
    act, error, message = ACTIONS[action]
    with pytest.raises(error, match=message) as refused:
        act(admin)
    assert refused.value.status == 409
    assert admin.registry.aliases("m") == {}


def test_a_rollback_onto_an_archived_version_is_refused(admin: RegistryAdmin) -> None:
    admin.set_alias("m", "production", 1)
    admin.set_alias("m", "production", 2)
    admin.archive("m", 1)
    with pytest.raises(VersionInUse, match="got archived v1"):
        admin.rollback("m", "production")
    assert admin.registry.resolve(ModelRef("m")) == 2


def test_an_aliased_version_cannot_be_archived(admin: RegistryAdmin) -> None:
    admin.set_alias("m", "production", 1, canary=CanarySplit(version=2, weight=0.5))
    for version in (1, 2):
        with pytest.raises(VersionInUse, match=r"expected no alias on it, got \['production'\]"):
            admin.archive("m", version)


def test_when_every_version_is_archived_only_pins_resolve(admin: RegistryAdmin) -> None:
    for version in (1, 2):
        admin.archive("m", version)
    for reference in (ModelRef("m"), ModelRef("m", alias="latest")):
        with pytest.raises(
            NotFound, match="got 3 archived ones; an archived version is served only when pinned"
        ):
            admin.registry.resolve(reference)
    assert [admin.registry.resolve(ModelRef("m", version=v)) for v in (1, 2, 3)] == [1, 2, 3]


def test_tags_leave_the_status_alone(admin: RegistryAdmin) -> None:
    assert admin.set_tags("m", 3, {"reason": "superseded"}).status == "archived"
    assert admin.registry.resolve(ModelRef("m", alias="latest")) == 2


def test_a_pinned_archived_version_is_served_with_its_metadata(
    registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    from maas.training import publish_trained

    for _ in range(2):
        publish_trained(seed_model, registry)
    RegistryAdmin(registry).archive("seed-mlp", 2)
    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))
    rows = seed_model.test_inputs["input"][:2]
    request = InferenceRequest(inputs=[Tensor("input", "FP32", rows)])

    pinned = service.infer(ModelRef("seed-mlp", version=2), request)
    assert pinned.model_version == 2
    np.testing.assert_allclose(pinned.outputs[0].array, seed_model.predict(rows), atol=1e-5)
    assert service.model_metadata(ModelRef("seed-mlp", version=2)).version == 2
    assert service.infer(ModelRef("seed-mlp"), request).model_version == 1
    assert service.model_metadata(ModelRef("seed-mlp", alias="latest")).version == 1
    # Metadata lists every version a pin can reach, archived ones included.
    assert service.model_metadata(ModelRef("seed-mlp")).versions == [1, 2]
