"""A version number is given once, ever: not again after a delete, a collected upload, or a race.

Each row builds a registry history (publishes, deletes, abandoned or pre-claim folders written straight to
the bucket) and names the number the next publish must get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from maas.errors import InvalidInput, NotFound
from maas.registry import ModelRef, ModelRegistry
from maas.registry.admin import RegistryAdmin
from maas.registry.manifest import MANIFEST_FILE
from maas.registry.store import CLAIM_FILE
from tests.support.aws import TEST_BUCKET
from tests.support.registry import DRAFT, graph, publish, rival_takes_the_next_number

NAME = "m"


def delete(registry: ModelRegistry, version: int) -> None:
    RegistryAdmin(registry).delete_version(NAME, version)


def collect(registry: ModelRegistry) -> None:
    RegistryAdmin(registry).collect_garbage(NAME, older_than=timedelta(0), apply=True)


def folder(registry: ModelRegistry, version: int) -> list[str]:
    """The files left in a version folder, relative to it."""
    prefix = registry.version_prefix(NAME, version)
    return sorted(key.removeprefix(prefix) for key, _ in registry.version_folders(NAME).get(version, []))


def plant_pre_claim_version(s3: Any, registry: ModelRegistry, version: int) -> None:
    """A version as publishers before claims wrote it: artifacts and a manifest, no claim.json."""
    scratch = ModelRegistry(s3, TEST_BUCKET, prefix="scratch/")
    manifest = scratch.publish(NAME, {"model.onnx": graph(b"old")}, DRAFT)
    prefix = registry.version_prefix(NAME, version)
    body = manifest.model_copy(update={"version": version}).model_dump_json().encode()
    s3.put_object(Bucket=TEST_BUCKET, Key=prefix + "model.onnx", Body=graph(b"old"))
    s3.put_object(Bucket=TEST_BUCKET, Key=prefix + MANIFEST_FILE, Body=body)


def abandon_upload(s3: Any, registry: ModelRegistry, version: int, *, claimed: bool) -> None:
    """A publisher that died after its first artifact (and, since claims, after its claim)."""
    prefix = registry.version_prefix(NAME, version)
    if claimed:
        s3.put_object(Bucket=TEST_BUCKET, Key=prefix + CLAIM_FILE, Body=b'{"claimed_at": "then"}')
    s3.put_object(Bucket=TEST_BUCKET, Key=prefix + "model.onnx", Body=b"half")


@dataclass(frozen=True)
class History:
    build: Callable[[Any, ModelRegistry], None]
    next_version: int
    committed: list[int]


def _publish(count: int) -> Callable[[Any, ModelRegistry], None]:
    def build(s3: Any, registry: ModelRegistry) -> None:
        for _ in range(count):
            publish(registry)

    return build


def _then(*steps: Callable[[Any, ModelRegistry], None]) -> Callable[[Any, ModelRegistry], None]:
    def build(s3: Any, registry: ModelRegistry) -> None:
        for step in steps:
            step(s3, registry)

    return build


def _delete(*versions: int) -> Callable[[Any, ModelRegistry], None]:
    def build(s3: Any, registry: ModelRegistry) -> None:
        for version in versions:
            delete(registry, version)

    return build


HISTORIES = {
    # The reported case: the new model was "version 5" again.
    "publish five, delete the fifth": History(_then(_publish(5), _delete(5)), 6, [1, 2, 3, 4]),
    "delete the highest twice over": History(_then(_publish(3), _delete(3, 2)), 4, [1]),
    "delete a middle version": History(_then(_publish(3), _delete(2)), 4, [1, 3]),
    "delete every version": History(_then(_publish(3), _delete(1, 2, 3)), 4, []),
    "delete every version, publish again, delete again": History(
        _then(_publish(2), _delete(1, 2), _publish(1), _delete(3)), 4, []
    ),
    "a claimed upload that never committed": History(
        _then(_publish(2), lambda s3, r: abandon_upload(s3, r, 3, claimed=True)), 4, [1, 2]
    ),
    "a claimed upload, collected": History(
        _then(_publish(2), lambda s3, r: abandon_upload(s3, r, 3, claimed=True), lambda s3, r: collect(r)),
        4,
        [1, 2],
    ),
    "an upload from before claims, collected": History(
        _then(_publish(2), lambda s3, r: abandon_upload(s3, r, 3, claimed=False), lambda s3, r: collect(r)),
        4,
        [1, 2],
    ),
    "versions from before claims": History(
        _then(*(lambda s3, r, v=v: plant_pre_claim_version(s3, r, v) for v in (1, 2))), 3, [1, 2]
    ),
    "the highest version from before claims, deleted": History(
        _then(*(lambda s3, r, v=v: plant_pre_claim_version(s3, r, v) for v in (1, 2)), _delete(2)), 3, [1]
    ),
}


@pytest.mark.parametrize("case", HISTORIES, ids=str)
def test_the_next_publish_gets_a_number_never_given_before(
    case: str, registry: ModelRegistry, s3: Any
) -> None:
    history = HISTORIES[case]
    history.build(s3, registry)

    assert registry.versions(NAME) == history.committed
    assert publish(registry, b"new") == history.next_version
    assert registry.versions(NAME) == [*history.committed, history.next_version]
    # Every number below the new one is still taken by some object: no folder was emptied.
    assert all(folder(registry, version) for version in range(1, history.next_version))


def test_a_deleted_version_leaves_only_its_claim_and_is_not_found(registry: ModelRegistry) -> None:
    for _ in range(2):
        publish(registry)
    RegistryAdmin(registry).set_tags(NAME, 2, {"team": "ml"})
    delete(registry, 2)

    assert folder(registry, 2) == [CLAIM_FILE]
    assert registry.version_meta(NAME, 2) is None
    for ref in (ModelRef(NAME, version=2),):
        with pytest.raises(NotFound, match=f"model '{NAME}' version 2: not found"):
            registry.resolve(ref)
    assert registry.resolve(ModelRef(NAME, alias="latest")) == 1
    with pytest.raises(NotFound):
        delete(registry, 2)


def test_a_model_whose_versions_are_all_deleted_is_not_listed(registry: ModelRegistry) -> None:
    publish(registry)
    delete(registry, 1)

    assert registry.list_models() == []
    with pytest.raises(NotFound, match="no published version"):
        registry.resolve(ModelRef(NAME))
    # Garbage collection leaves the retired folder alone: it is not an abandoned upload.
    assert RegistryAdmin(registry).collect_garbage(NAME, older_than=timedelta(0), apply=True) == []
    assert folder(registry, 1) == [CLAIM_FILE]


def test_a_publisher_that_listed_before_a_delete_cannot_take_the_deleted_number(
    registry: ModelRegistry,
) -> None:
    for _ in range(3):
        publish(registry)
    real_next = registry._next_version_number

    def listed_before_the_delete(name: str) -> int:
        # This publisher listed the folders while v3 did not exist yet; v3 was then published and deleted.
        real_next(name)
        return 3

    delete(registry, 3)
    registry._next_version_number = listed_before_the_delete  # type: ignore[method-assign]

    assert publish(registry, b"late") == 4
    assert folder(registry, 3) == [CLAIM_FILE]


def test_a_publisher_from_before_claims_racing_for_the_same_number_is_not_overwritten(
    registry: ModelRegistry, s3: Any
) -> None:
    publish(registry)
    # An older publisher takes the number with its first artifact alone, between our listing and claim.
    rival_takes_the_next_number(registry, s3)
    assert publish(registry, b"ours") == 3
    assert s3.get_object(Bucket=TEST_BUCKET, Key="models/m/versions/2/model.onnx")["Body"].read() == b"theirs"


@pytest.mark.parametrize("path", [CLAIM_FILE, MANIFEST_FILE, "manifest.sig"])
def test_no_artifact_may_take_the_name_of_a_file_the_registry_writes(
    registry: ModelRegistry, path: str
) -> None:
    with pytest.raises(InvalidInput, match="is not a safe relative path"):
        registry.publish(NAME, {"model.onnx": graph(), path: b"{}"}, DRAFT)
    assert registry.version_folders(NAME) == {}
