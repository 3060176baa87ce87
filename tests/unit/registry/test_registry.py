from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from maas.errors import IntegrityError, InvalidInput, NotFound, Unavailable
from maas.registry import ManifestDraft, ModelRef, ModelRegistry, VersionConflict
from maas.registry.admin import NO_ALIAS, RegistryAdmin, VersionInUse
from maas.registry.documents import CanarySplit
from maas.registry.manifest import sha256_hex
from tests.support.aws import TEST_BUCKET
from tests.support.registry import DRAFT, graph, publish, rival_takes_the_next_number


def test_versions_are_consecutive_integers_with_checksummed_artifacts(registry: ModelRegistry) -> None:
    assert [publish(registry, b"one"), publish(registry, b"two")] == [1, 2]
    manifest = registry.manifest("m", 2)
    assert manifest.artifact("model.onnx").sha256 == sha256_hex(graph(b"two"))
    assert manifest.artifact("card.md").bytes == len(b"# card")
    assert manifest.metrics == {"mse": 0.1}
    assert registry.versions("m") == [1, 2]
    assert registry.list_models() == ["m"]


def test_manifest_is_written_last_so_a_partial_upload_is_invisible(registry: ModelRegistry, s3: Any) -> None:
    publish(registry)
    # A publisher that died after uploading its model file but before its manifest.
    s3.put_object(Bucket=TEST_BUCKET, Key="models/m/versions/2/model.onnx", Body=b"half")

    assert registry.versions("m") == [1]
    assert registry.resolve(ModelRef("m")) == 1
    with pytest.raises(NotFound):
        registry.resolve(ModelRef("m", version=2))
    # The abandoned number is never reused: the next publish claims 3.
    assert publish(registry) == 3


def test_a_lost_version_claim_moves_on_to_the_next_number(registry: ModelRegistry, s3: Any) -> None:
    publish(registry)
    # Another publisher claims the number between our listing and our write.
    rival_takes_the_next_number(registry, s3)
    assert publish(registry, b"ours") == 3
    assert s3.get_object(Bucket=TEST_BUCKET, Key="models/m/versions/2/model.onnx")["Body"].read() == b"theirs"


def test_concurrent_publishers_never_share_a_version(registry: ModelRegistry) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        version = publish(registry, f"model-{index}".encode())
        with lock:
            versions.append(version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(1, 7))
    for version in versions:
        registry.manifest("m", version)


def test_nothing_in_a_version_folder_is_ever_overwritten(registry: ModelRegistry, s3: Any) -> None:
    publish(registry, b"original")
    registry._next_version_number = lambda name: 1  # type: ignore[method-assign]
    assert publish(registry, b"other") == 2
    assert s3.get_object(Bucket=TEST_BUCKET, Key="models/m/versions/1/model.onnx")["Body"].read() == graph(
        b"original"
    )


def test_default_reference_follows_the_default_alias_then_falls_back_to_latest(
    registry: ModelRegistry,
) -> None:
    publish(registry)
    publish(registry)
    assert registry.resolve(ModelRef("m")) == 2
    assert registry.resolve(ModelRef("m", alias="latest")) == 2

    RegistryAdmin(registry).set_alias("m", "production", 1)
    assert registry.resolve(ModelRef("m")) == 1
    assert registry.resolve(ModelRef("m", alias="production")) == 1
    with pytest.raises(NotFound, match="alias 'staging' is not set"):
        registry.resolve(ModelRef("m", alias="staging"))


def test_aliases_move_only_by_compare_and_swap(registry: ModelRegistry) -> None:
    admin = RegistryAdmin(registry)
    publish(registry)
    publish(registry)
    admin.set_alias("m", "production", 1, expected_version=NO_ALIAS)
    with pytest.raises(VersionConflict, match="expected it at version unset, got 1"):
        admin.set_alias("m", "production", 2, expected_version=NO_ALIAS)
    admin.set_alias("m", "production", 2, expected_version=1)
    with pytest.raises(VersionConflict, match="expected it at version 1, got 2"):
        admin.set_alias("m", "production", 1, expected_version=1)
    stored = registry.alias_document("m", "production")
    assert stored is not None and stored.document.version == 2
    assert [(h.from_version, h.to_version) for h in stored.document.history] == [(None, 1), (1, 2)]
    with pytest.raises(NotFound):
        admin.set_alias("m", "production", 9)
    with pytest.raises(InvalidInput):
        admin.set_alias("m", "latest", 1)


def test_unknown_models_and_versions_are_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="model 'ghost': not found"):
        registry.resolve(ModelRef("ghost"))
    publish(registry)
    with pytest.raises(NotFound, match="version 5: not found"):
        registry.resolve(ModelRef("m", version=5))
    with pytest.raises(NotFound):
        registry.manifest("m", 5)


def test_a_tampered_artifact_fails_its_checksum(registry: ModelRegistry, s3: Any) -> None:
    publish(registry, b"genuine")
    manifest = registry.manifest("m", 1)
    assert registry.read_artifact(manifest, manifest.artifact("model.onnx")) == graph(b"genuine")

    s3.put_object(Bucket=TEST_BUCKET, Key="models/m/versions/1/model.onnx", Body=b"evil!!!")
    with pytest.raises(IntegrityError, match="expected the sha256 and size in its manifest"):
        registry.read_artifact(manifest, manifest.artifact("model.onnx"))


def test_a_corrupt_manifest_is_an_integrity_error(registry: ModelRegistry, s3: Any) -> None:
    publish(registry)
    s3.put_object(Bucket=TEST_BUCKET, Key="models/m/versions/1/manifest.json", Body=json.dumps({"name": "m"}))
    with pytest.raises(IntegrityError):
        registry.manifest("m", 1)


@pytest.mark.parametrize("path", ["../escape.onnx", "/abs.onnx", "a/../../b", "manifest.json", "sp ace"])
def test_publish_refuses_unsafe_artifact_paths(registry: ModelRegistry, path: str) -> None:
    with pytest.raises(InvalidInput):
        registry.publish("m", {"model.onnx": b"g", path: b"x"}, DRAFT)
    assert registry.versions("m") == []


def test_publish_requires_the_model_file(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInput, match=r"graph file 'model\.onnx'"):
        registry.publish("m", {"other.onnx": b"g"}, DRAFT)


def test_prefix_keeps_registries_apart(s3: Any) -> None:
    team_a = ModelRegistry(s3, TEST_BUCKET, prefix="team-a/")
    team_b = ModelRegistry(s3, TEST_BUCKET, prefix="team-b/")
    publish(team_a)
    assert team_a.versions("m") == [1]
    assert team_b.versions("m") == []
    assert s3.head_object(Bucket=TEST_BUCKET, Key="team-a/models/m/versions/1/manifest.json")


def test_a_missing_bucket_is_unavailable_not_a_client_error(s3: Any) -> None:
    registry = ModelRegistry(s3, "no-such-bucket")
    with pytest.raises(Unavailable):
        registry.check_reachable()
    with pytest.raises(Unavailable):
        registry.versions("m")


def test_a_canary_survives_promotion_and_rollback_restores_it(registry: ModelRegistry) -> None:
    admin = RegistryAdmin(registry)
    for payload in (b"1", b"2", b"3"):
        publish(registry, payload)
    split = CanarySplit(version=3, weight=0.1)
    admin.set_alias("m", "production", 1, canary=split)
    assert admin.promote("m", 2, force=True, reason="test").canary == split
    assert admin.rollback("m", "production").canary == split
    assert admin.promote("m", 3, force=True, reason="the canary graduates").canary is None


def test_an_archived_version_cannot_be_aliased_and_an_aliased_one_cannot_be_archived(
    registry: ModelRegistry,
) -> None:
    admin = RegistryAdmin(registry)
    publish(registry)
    publish(registry)
    admin.set_alias("m", "production", 1)
    with pytest.raises(VersionInUse, match="expected no alias on it"):
        admin.archive("m", 1)
    admin.archive("m", 2)
    with pytest.raises(VersionInUse, match="got archived v2"):
        admin.set_alias("m", "staging", 2)


def test_a_manifest_keeps_its_json_field_order_and_shares_the_draft_fields(registry: ModelRegistry) -> None:
    # Signatures cover a manifest's exact bytes, so the field order written to S3 is part of the format.
    manifest = registry.publish("m", {"model.onnx": graph()}, DRAFT)
    assert list(json.loads(manifest.model_dump_json())) == [
        "schema_version",
        "name",
        "version",
        "created_at",
        "status",
        "task",
        "description",
        "model_file",
        "model_data_files",
        "signature",
        "weight_loading",
        "artifacts",
        "metrics",
        "params",
        "lineage",
        "parity",
        "labels",
        "primary_metric",
        "primary_metric_goal",
        "evaluation",
        "preprocessing",
        "quantization",
        "input_means",
        "feature_importance",
        "generation",
    ]
    assert manifest.model_dump(include=set(ManifestDraft.model_fields)) == DRAFT.model_dump()
