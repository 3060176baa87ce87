"""Downloading an artifact into a file: parallel ranged GETs per part, each checked against the manifest as
it lands; any object that is not the published one is refused by name and leaves no file behind."""

from __future__ import annotations

import errno
import io
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ResponseStreamingError

from maas.aws_clients import s3_client
from maas.errors import InsufficientStorage, IntegrityError, NotFound, Unavailable
from maas.objects import MIB, MIN_PART_BYTES
from maas.registry import Manifest, ModelRegistry
from maas.registry.artifact_downloads import STREAM_ATTEMPTS
from tests.support.aws import TEST_BUCKET, moto_server
from tests.support.registry import DRAFT, graph

PART = MIN_PART_BYTES
WEIGHTS = "model.onnx.data"


def publish_weights(registry: ModelRegistry, folder: Path, content: bytes) -> Manifest:
    source = folder / "source.data"
    source.write_bytes(content)
    return registry.publish("big", {"model.onnx": graph(), WEIGHTS: source}, DRAFT)


def replace_object(s3: Any, registry: ModelRegistry, manifest: Manifest, content: bytes) -> None:
    """What a bucket writer could do after the publish: put other bytes under the artifact's key."""
    key = registry.version_prefix(manifest.name, manifest.version) + WEIGHTS
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=content)


class BreaksOff:
    """A GET body that delivers its first chunk, then fails as a dropped connection does."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        yield self._body.read(chunk_size)
        raise ResponseStreamingError(error="connection reset by peer")

    def close(self) -> None:
        self._body.close()


def break_bodies(s3: Any, times: int) -> None:
    """The next `times` ranged GETs of part 2 break off after their first chunk."""
    left = [times]

    def breaking(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("ContentRange", "").startswith(f"bytes {PART}-") and left[0] > 0:
            left[0] -= 1
            parsed["Body"] = BreaksOff(parsed["Body"])

    s3.meta.events.register("after-call.s3.GetObject", breaking)


@pytest.mark.parametrize("breaks", [0, STREAM_ATTEMPTS - 1], ids=["clean", "ranges-break-off"])
def test_a_parted_artifact_lands_byte_for_byte(
    s3: Any, parted: ModelRegistry, tmp_path: Path, breaks: int
) -> None:
    content = os.urandom(13 * MIB + 7)
    manifest = publish_weights(parted, tmp_path, content)
    # A range that breaks off midway is fetched again from its start.
    break_bodies(s3, times=breaks)
    target = tmp_path / "load" / WEIGHTS
    target.parent.mkdir()

    parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert target.read_bytes() == content


@pytest.mark.parametrize("size", [0, 100, PART], ids=["empty", "small", "one-part"])
def test_an_artifact_without_parts_lands_through_one_get(
    parted: ModelRegistry, tmp_path: Path, size: int
) -> None:
    content = os.urandom(size)
    manifest = publish_weights(parted, tmp_path, content)
    assert manifest.artifact(WEIGHTS).parts is None
    target = tmp_path / "target"

    parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert target.read_bytes() == content


def test_a_corrupted_part_is_refused_by_number_and_the_file_removed(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    content = os.urandom(12 * MIB)
    manifest = publish_weights(parted, tmp_path, content)
    # Same size, one byte different in the second part.
    middle = PART + 1000
    replace_object(
        s3, parted, manifest, content[:middle] + bytes([content[middle] ^ 1]) + content[middle + 1 :]
    )
    target = tmp_path / "target"

    with pytest.raises(IntegrityError) as refused:
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert f"artifact '{WEIGHTS}' of model 'big' v1: part 2 of 3" in refused.value.message
    assert not target.exists()


def test_a_corrupted_artifact_without_parts_is_refused_and_the_file_removed(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    manifest = publish_weights(parted, tmp_path, b"weights")
    replace_object(s3, parted, manifest, b"WEIGHTS")
    target = tmp_path / "target"

    with pytest.raises(IntegrityError, match=f"artifact '{WEIGHTS}' of model 'big' v1: expected the sha256"):
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert not target.exists()


@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_an_object_of_another_size_is_refused_and_the_file_removed(
    s3: Any, parted: ModelRegistry, tmp_path: Path, change: str
) -> None:
    content = os.urandom(11 * MIB)
    manifest = publish_weights(parted, tmp_path, content)
    replace_object(s3, parted, manifest, content[: 7 * MIB] if change == "truncated" else content + b"x")
    target = tmp_path / "target"

    with pytest.raises(IntegrityError, match=f"artifact '{WEIGHTS}' of model 'big' v1: part"):
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert not target.exists()


def test_an_answer_that_ignores_the_range_is_refused(s3: Any, parted: ModelRegistry, tmp_path: Path) -> None:
    manifest = publish_weights(parted, tmp_path, os.urandom(11 * MIB))

    def drop_the_range(params: dict[str, Any], **_: Any) -> None:
        params.pop("Range", None)

    # A store (or proxy) that answers every ranged GET with the whole object.
    s3.meta.events.register("provide-client-params.s3.GetObject", drop_the_range)
    target = tmp_path / "target"

    with pytest.raises(IntegrityError, match="Content-Range None"):
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert not target.exists()


def test_a_missing_object_propagates_and_leaves_no_file(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    manifest = publish_weights(parted, tmp_path, os.urandom(11 * MIB))
    s3.delete_object(Bucket=TEST_BUCKET, Key=parted.version_prefix("big", 1) + WEIGHTS)
    target = tmp_path / "target"

    with pytest.raises(NotFound):
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert not target.exists()


@pytest.mark.parametrize("where", ["reserving the file", "writing a range"])
def test_a_disk_that_fills_during_a_download_is_507_and_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, parted: ModelRegistry, tmp_path: Path, where: str
) -> None:
    manifest = publish_weights(parted, tmp_path, os.urandom(11 * MIB))
    full = OSError(errno.ENOSPC, "No space left on device")

    def no_space(*args: Any) -> Any:
        raise full

    monkeypatch.setattr(os, "posix_fallocate" if where == "reserving the file" else "pwrite", no_space)
    target = tmp_path / "target"

    with pytest.raises(InsufficientStorage) as refused:
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert refused.value.status == 507
    assert refused.value.message.startswith(
        f"artifact '{WEIGHTS}' of model 'big' v1: expected 11 MB of temp space for it in {tmp_path}, "
        "got a full disk ("
    )
    assert refused.value.message.endswith(
        "raise the template parameter EphemeralStorageSize (up to 10240 MB)"
    )
    assert not target.exists()


@pytest.fixture
def store_over_http() -> Iterator[ModelRegistry]:
    """The embedded store's moto server, which checks each part's ChecksumSHA256 as S3 does, over HTTP."""
    with moto_server() as endpoint:
        # moto keeps one state per process, whatever the server: each test starts from an empty store.
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
        )
        client = s3_client(endpoint)
        client.create_bucket(Bucket=TEST_BUCKET)
        yield ModelRegistry(client, TEST_BUCKET, part_bytes=PART)


def test_over_http_the_store_accepts_each_parts_checksum_and_the_file_lands(
    store_over_http: ModelRegistry, tmp_path: Path
) -> None:
    content = os.urandom(11 * MIB)
    manifest = publish_weights(store_over_http, tmp_path, content)
    target = tmp_path / "target"

    store_over_http.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert target.read_bytes() == content


def test_over_http_a_part_damaged_on_the_way_is_refused_by_the_store(
    store_over_http: ModelRegistry, tmp_path: Path
) -> None:
    s3: Any = store_over_http._s3

    def damage_part_2(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url:
            sent = request.body.read()
            request.body = io.BytesIO(bytes([sent[0] ^ 1]) + sent[1:])

    s3.meta.events.register("before-send.s3.UploadPart", damage_part_2)

    with pytest.raises(Unavailable, match="part 2"):
        publish_weights(store_over_http, tmp_path, os.urandom(11 * MIB))

    assert store_over_http.versions("big") == []
    assert s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", []) == []


def test_a_range_that_keeps_breaking_off_is_unavailable_and_leaves_no_file(
    s3: Any, parted: ModelRegistry, tmp_path: Path
) -> None:
    manifest = publish_weights(parted, tmp_path, os.urandom(11 * MIB))
    break_bodies(s3, times=STREAM_ATTEMPTS)
    target = tmp_path / "target"

    with pytest.raises(Unavailable, match=f"part 2 of 3 .*broke off {STREAM_ATTEMPTS} times"):
        parted.download_artifact(manifest, manifest.artifact(WEIGHTS), target)

    assert not target.exists()
