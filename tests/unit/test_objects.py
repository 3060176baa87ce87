"""Create-once writes on moto: small and multipart objects, parts in parallel with their checksums, the part
size past the part limit, two writers racing, and aborts."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from maas.errors import Unavailable
from maas.objects import (
    DEFAULT_PART_BYTES,
    MAX_PARTS,
    CreateOnceUpload,
    PartsUpload,
    object_exists,
    part_bytes_for,
    put_new,
)
from tests.support.aws import TEST_BUCKET

MIB = 1024 * 1024
# S3 refuses parts under 5 MiB except the last one.
PART = 5 * MIB


def uploads(s3: Any) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", [])
    return listed


def test_a_small_object_is_one_conditional_put(s3: Any) -> None:
    with CreateOnceUpload(s3, TEST_BUCKET, "out/small", part_bytes=PART) as upload:
        upload.write(b"hello ")
        upload.write(b"world")
        assert not object_exists(s3, TEST_BUCKET, "out/small")
        assert upload.commit() is True

    assert s3.get_object(Bucket=TEST_BUCKET, Key="out/small")["Body"].read() == b"hello world"
    assert uploads(s3) == []


def test_a_large_object_goes_in_parts_and_appears_only_when_committed(s3: Any) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    with CreateOnceUpload(s3, TEST_BUCKET, "out/large", part_bytes=PART) as upload:
        for _ in range(12):
            upload.write(block)
        assert len(uploads(s3)) == 1
        assert not object_exists(s3, TEST_BUCKET, "out/large")
        assert upload.commit() is True

    body = s3.get_object(Bucket=TEST_BUCKET, Key="out/large")["Body"].read()
    assert body == block * 12
    assert s3.head_object(Bucket=TEST_BUCKET, Key="out/large")["ETag"].endswith('-3"')
    assert uploads(s3) == []


def test_of_two_writers_racing_for_a_key_one_commits_and_the_other_changes_nothing(s3: Any) -> None:
    first = CreateOnceUpload(s3, TEST_BUCKET, "out/raced", part_bytes=PART)
    second = CreateOnceUpload(s3, TEST_BUCKET, "out/raced", part_bytes=PART)
    for writer, fill in ((first, b"a"), (second, b"b")):
        writer.write(fill * (PART + 10))

    assert first.commit() is True
    assert second.commit() is False

    assert s3.get_object(Bucket=TEST_BUCKET, Key="out/raced")["Body"].read(1) == b"a"
    assert uploads(s3) == []
    assert put_new(s3, TEST_BUCKET, "out/raced", b"late") is False


def test_leaving_without_commit_aborts_and_leaves_nothing(s3: Any) -> None:
    with (
        pytest.raises(RuntimeError, match="job broke"),
        CreateOnceUpload(s3, TEST_BUCKET, "out/broken", part_bytes=PART) as upload,
    ):
        upload.write(b"x" * (PART + 1))
        raise RuntimeError("job broke")

    assert not object_exists(s3, TEST_BUCKET, "out/broken")
    assert uploads(s3) == []


def test_a_missing_bucket_is_unavailable_not_a_client_error(s3: Any) -> None:
    with pytest.raises(Unavailable, match="the bucket does not exist"):
        put_new(s3, "no-such-bucket-here", "k", b"x")


@pytest.mark.parametrize(
    ("size", "preferred", "expected"),
    [
        (0, DEFAULT_PART_BYTES, DEFAULT_PART_BYTES),
        (3 * 1024**3, DEFAULT_PART_BYTES, DEFAULT_PART_BYTES),
        # 8 MiB parts cover 10,000 parts of 8 MiB exactly; one byte more needs 9 MiB parts.
        (MAX_PARTS * DEFAULT_PART_BYTES, DEFAULT_PART_BYTES, DEFAULT_PART_BYTES),
        (MAX_PARTS * DEFAULT_PART_BYTES + 1, DEFAULT_PART_BYTES, 9 * MIB),
        (100 * 1024**3, DEFAULT_PART_BYTES, 11 * MIB),
        (10 * MIB, 1 * MIB, PART),
    ],
    ids=["empty", "3-gb", "at-the-part-limit", "past-the-part-limit", "100-gib", "below-s3-minimum"],
)
def test_the_part_size_grows_only_past_the_part_limit(size: int, preferred: int, expected: int) -> None:
    part = part_bytes_for(size, preferred)

    assert part == expected
    assert -(-size // part) <= MAX_PARTS


def test_parts_in_parallel_keep_their_order_and_checksums(s3: Any) -> None:
    bodies = [bytes([index]) * PART for index in range(5)] + [b"tail"]
    upload = PartsUpload(s3, TEST_BUCKET, "out/parallel", concurrency=3, checksums=True)
    for body in bodies:
        upload.send(body)

    assert upload.complete() is True

    assert s3.get_object(Bucket=TEST_BUCKET, Key="out/parallel")["Body"].read() == b"".join(bodies)
    assert upload.part_sha256 == [hashlib.sha256(body).hexdigest() for body in bodies]
    assert uploads(s3) == []


def test_a_failed_part_fails_the_upload_and_abort_leaves_nothing(s3: Any) -> None:
    def third_part_breaks(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 3:
            raise ConnectionResetError("the network went away")

    s3.meta.events.register("provide-client-params.s3.UploadPart", third_part_breaks)
    upload = PartsUpload(s3, TEST_BUCKET, "out/failed", concurrency=2, checksums=True)

    with pytest.raises(ConnectionResetError):
        for index in range(6):
            upload.send(bytes([index]) * PART)
        upload.complete()
    upload.abort()

    assert not object_exists(s3, TEST_BUCKET, "out/failed")
    assert uploads(s3) == []
