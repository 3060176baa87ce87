"""Publishing files from disk: streamed in parallel parts whose sha256 the manifest lists and S3 keeps,
committed create-only so concurrent publishers still get distinct versions, and refused or left invisible
when something is wrong."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.objects import MIB, MIN_PART_BYTES
from maas.registry import ModelRegistry
from maas.registry.manifest import MANIFEST_FILE
from tests.support.aws import TEST_BUCKET
from tests.support.registry import DRAFT, graph, rival_takes_the_next_number

PART = MIN_PART_BYTES
NAME = "big"


def weights_file(folder: Path, size: int, name: str = "model.onnx.data") -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def chunk_digests(data: bytes, size: int) -> list[str]:
    return [hashlib.sha256(data[start : start + size]).hexdigest() for start in range(0, len(data), size)]


def folder_keys(s3: Any, version: int) -> list[str]:
    prefix = f"models/{NAME}/versions/{version}/"
    listed = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"].removeprefix(prefix) for item in listed)


def multipart_uploads(s3: Any) -> list[Any]:
    uploads: list[Any] = s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", [])
    return uploads


def test_a_file_goes_up_in_parts_whose_sha256_the_manifest_lists(
    parted: ModelRegistry, tmp_path: Path
) -> None:
    weights = weights_file(tmp_path, 13 * MIB + 123)
    content = weights.read_bytes()

    manifest = parted.publish(NAME, {"model.onnx": graph(), "model.onnx.data": weights}, DRAFT)

    artifact = manifest.artifact("model.onnx.data")
    assert artifact.bytes == len(content)
    assert artifact.sha256 == hashlib.sha256(content).hexdigest()
    assert artifact.parts is not None
    assert artifact.parts.bytes == PART
    assert artifact.parts.sha256 == chunk_digests(content, PART)
    assert len(artifact.parts.sha256) == 3
    assert parted.read_artifact(manifest, artifact) == content
    # The graph was handed over as bytes: one PUT, no parts, as before.
    assert manifest.artifact("model.onnx").parts is None


def test_s3_keeps_each_parts_sha256_the_manifest_lists(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    weights = weights_file(tmp_path, 11 * MIB)

    manifest = parted.publish(NAME, {"model.onnx": graph(), "model.onnx.data": weights}, DRAFT)

    artifact = manifest.artifact("model.onnx.data")
    assert artifact.parts is not None
    key = parted.version_prefix(NAME, manifest.version) + artifact.path
    for number, digest in enumerate(artifact.parts.sha256, start=1):
        stored = s3.head_object(Bucket=TEST_BUCKET, Key=key, PartNumber=number, ChecksumMode="ENABLED")
        assert stored["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert multipart_uploads(s3) == []


def test_a_graph_file_on_disk_is_vetted_and_uploaded_in_parts(parted: ModelRegistry, tmp_path: Path) -> None:
    # A graph made large by its doc string: the bytes vetted are the bytes uploaded.
    model = tmp_path / "model.onnx"
    model.write_bytes(graph(b"g" * (12 * MIB)))

    manifest = parted.publish(NAME, {"model.onnx": model}, DRAFT)

    artifact = manifest.artifact("model.onnx")
    assert artifact.parts is not None
    assert artifact.parts.sha256 == chunk_digests(model.read_bytes(), PART)
    assert parted.read_artifact(manifest, artifact) == model.read_bytes()


def test_a_file_of_exactly_one_part_is_one_put_without_parts(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    weights = weights_file(tmp_path, PART)

    manifest = parted.publish(NAME, {"model.onnx": graph(), "model.onnx.data": weights}, DRAFT)

    artifact = manifest.artifact("model.onnx.data")
    assert artifact.parts is None
    assert artifact.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    key = parted.version_prefix(NAME, manifest.version) + artifact.path
    assert "-" not in s3.head_object(Bucket=TEST_BUCKET, Key=key)["ETag"]
    assert parted.read_artifact(manifest, artifact) == weights.read_bytes()


def test_an_empty_file_is_published_as_zero_bytes(parted: ModelRegistry, tmp_path: Path) -> None:
    empty = tmp_path / "labels.txt"
    empty.touch()

    manifest = parted.publish(NAME, {"model.onnx": graph(), "labels.txt": empty}, DRAFT)

    artifact = manifest.artifact("labels.txt")
    assert (artifact.bytes, artifact.parts) == (0, None)
    assert artifact.sha256 == hashlib.sha256(b"").hexdigest()
    assert parted.read_artifact(manifest, artifact) == b""


def test_publishers_racing_for_a_number_get_distinct_versions(s3: Any, tmp_path: Path) -> None:
    ours, theirs = (
        weights_file(tmp_path, 11 * MIB, "ours.data"),
        weights_file(tmp_path, 12 * MIB, "theirs.data"),
    )
    first = ModelRegistry(s3, TEST_BUCKET, part_bytes=PART)
    second = ModelRegistry(s3, TEST_BUCKET, part_bytes=PART)
    numbered: list[int] = []
    real_next = first._next_version_number

    def rival_publishes_in_between(name: str) -> int:
        # The race, made deterministic: the rival publishes its files between our listing and our claim.
        number = real_next(name)
        numbered.append(
            second.publish(name, {"model.onnx": graph(b"theirs"), "weights.data": theirs}, DRAFT).version
        )
        return number

    first._next_version_number = rival_publishes_in_between  # type: ignore[method-assign]

    mine = first.publish(NAME, {"model.onnx": graph(b"ours"), "weights.data": ours}, DRAFT)

    assert (numbered, mine.version) == ([1], 2)
    for version, weights in ((1, theirs), (2, ours)):
        manifest = first.manifest(NAME, version)
        assert manifest.artifact("weights.data").sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert multipart_uploads(s3) == []


def test_a_multipart_graph_that_loses_its_number_moves_to_the_next(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(graph(b"g" * (11 * MIB)))
    rival_takes_the_next_number(parted, s3)

    manifest = parted.publish(NAME, {"model.onnx": model}, DRAFT)

    assert manifest.version == 2
    assert parted.read_artifact(manifest, manifest.artifact("model.onnx")) == model.read_bytes()
    assert multipart_uploads(s3) == []


def test_a_graph_file_over_2_gib_is_refused_by_its_size_before_it_is_read(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    model = tmp_path / "model.onnx"
    # Sparse: the size says 2 GiB + 1 without a byte on disk; reading it would take 2 GiB of memory.
    with model.open("wb") as handle:
        handle.truncate(2 * 1024**3 + 1)

    with pytest.raises(InvalidInput) as refused:
        parted.publish(NAME, {"model.onnx": model}, DRAFT)

    assert "2147483649 bytes" in refused.value.message
    assert "external data" in refused.value.message
    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount", 0) == 0


def test_a_missing_file_is_refused_naming_the_artifact(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"artifact 'model\.onnx\.data'"):
        parted.publish(NAME, {"model.onnx": graph(), "model.onnx.data": tmp_path / "absent"}, DRAFT)

    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount", 0) == 0


def test_an_upload_that_fails_midway_leaves_no_object_and_no_version(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    weights = weights_file(tmp_path, 16 * MIB)

    def storage_breaks_at_part_2(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise ConnectionResetError("the network went away")

    s3.meta.events.register("provide-client-params.s3.UploadPart", storage_breaks_at_part_2)

    with pytest.raises(ConnectionResetError):
        parted.publish(NAME, {"model.onnx": graph(), "model.onnx.data": weights}, DRAFT)

    assert "model.onnx.data" not in folder_keys(s3, 1)
    assert MANIFEST_FILE not in folder_keys(s3, 1)
    assert multipart_uploads(s3) == []
    assert parted.versions(NAME) == []
