"""Stitching shard outputs into one object on moto S3: byte-identical, in order, large pieces copied
server-side, and nothing visible (no upload left open) unless the whole object is."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from maas.errors import NotFound
from maas.objects import MAX_PARTS, MIB, MIN_PART_BYTES
from maas.service.job_compose import (
    ComposedPart,
    Piece,
    PieceRange,
    PieceSizeMismatch,
    TooManyParts,
    compose_in_order,
    compose_parts,
)
from tests.support.aws import REGION, TEST_BUCKET

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

OUTPUT = "jobs/m/j/output.jsonl"


class S3Calls:
    """The S3 operations a client makes, counted through botocore's own event hooks."""

    def __init__(self, s3: S3Client) -> None:
        self.counts: Counter[str] = Counter()
        self.copy_ranges: list[str] = []
        self.put_conditions: list[str | None] = []
        s3.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.counts[model.name] += 1
        if model.name == "UploadPartCopy":
            self.copy_ranges.append(params["headers"].get("x-amz-copy-source-range"))
        if model.name in ("PutObject", "CompleteMultipartUpload"):
            self.put_conditions.append(params["headers"].get("If-None-Match"))


def put_pieces(s3: S3Client, sizes: list[int], seed: int = 22) -> tuple[list[Piece], bytes]:
    """Pieces of the given sizes with distinct bytes, and what they make joined in order."""
    rng = random.Random(seed)
    pieces = []
    for index, size in enumerate(sizes):
        key = f"jobs/m/j/shards/{index:05d}.jsonl"
        s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=rng.randbytes(size))
        pieces.append(Piece(key, size))
    joined = b"".join(
        s3.get_object(Bucket=TEST_BUCKET, Key=piece.key)["Body"].read() for piece in pieces if piece.size
    )
    return pieces, joined


def output(s3: S3Client) -> bytes:
    return s3.get_object(Bucket=TEST_BUCKET, Key=OUTPUT)["Body"].read()


def no_upload_left_open(s3: S3Client) -> bool:
    return not s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads")


# ---- the parts, as a plan


def test_moto_refuses_parts_under_five_mib_but_the_last(s3: S3Client) -> None:
    # The behaviour every multipart test below relies on: moto enforces S3's minimum part size
    started = s3.create_multipart_upload(Bucket=TEST_BUCKET, Key="small-parts")
    etags = [
        s3.upload_part(
            Bucket=TEST_BUCKET, Key="small-parts", UploadId=started["UploadId"], PartNumber=n, Body=b"x" * 10
        )["ETag"]
        for n in (1, 2)
    ]

    with pytest.raises(s3.exceptions.ClientError, match="EntityTooSmall"):
        s3.complete_multipart_upload(
            Bucket=TEST_BUCKET,
            Key="small-parts",
            UploadId=started["UploadId"],
            MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, 1)]},
        )


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        pytest.param(
            [3, 3, 3], [("join", [("0", 0, 3), ("1", 0, 3)]), ("join", [("2", 0, 3)])], id="all-small"
        ),
        pytest.param([5, 7], [("copy", [("0", 0, 5)]), ("copy", [("1", 0, 7)])], id="all-large"),
        pytest.param(
            [2, 8],
            [("join", [("0", 0, 2), ("1", 0, 3)]), ("copy", [("1", 3, 8)])],
            id="a-large-piece-completes-a-small-buffer-then-is-copied",
        ),
        pytest.param(
            [2, 6],
            [("join", [("0", 0, 2), ("1", 0, 3)]), ("join", [("1", 3, 6)])],
            id="a-small-tail-is-read",
        ),
        pytest.param(
            [25], [("copy", [("0", 0, 9)]), ("copy", [("0", 9, 17)]), ("copy", [("0", 17, 25)])], id="split"
        ),
        pytest.param([0, 4, 0], [("join", [("1", 0, 4)])], id="empty-pieces-skipped"),
    ],
)
def test_compose_parts(sizes: list[int], expected: list[tuple[str, list[tuple[str, int, int]]]]) -> None:
    parts = compose_parts(
        [Piece(str(i), size) for i, size in enumerate(sizes)], min_part_bytes=5, max_part_bytes=10
    )

    assert parts == [
        ComposedPart(tuple(PieceRange(*piece_range) for piece_range in ranges), copied=kind == "copy")
        for kind, ranges in expected
    ]


def test_random_piece_sizes_make_valid_parts_that_rebuild_the_pieces() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        min_part, max_part = rng.randint(1, 20), 0
        max_part = rng.randint(2 * min_part, 5 * min_part)
        sizes = [
            rng.choice([0, rng.randint(1, min_part), rng.randint(min_part, 6 * max_part)]) for _ in range(12)
        ]
        pieces = [Piece(str(i), size) for i, size in enumerate(sizes)]

        parts = compose_parts(pieces, min_part_bytes=min_part, max_part_bytes=max_part)

        assert all(part.size >= min_part for part in parts[:-1])
        assert all(part.size <= max_part for part in parts)
        assert all(len(part.ranges) == 1 and part.size >= min_part for part in parts if part.copied)
        rebuilt = [(r.key, offset) for part in parts for r in part.ranges for offset in range(r.start, r.end)]
        assert rebuilt == [(piece.key, offset) for piece in pieces for offset in range(piece.size)]


# ---- composing on moto


@pytest.mark.parametrize(
    ("sizes", "copies", "uploads"),
    [
        pytest.param([MIB, 2 * MIB, 3 * MIB, MIB], 0, 2, id="all-small"),
        pytest.param([5 * MIB, 6 * MIB, 5 * MIB + 1], 3, 0, id="all-large"),
        pytest.param([MIB, 12 * MIB, MIB, 12 * MIB], 2, 2, id="small-large-small-large"),
        pytest.param([12 * MIB, MIB, 7 * MIB, 300], 1, 2, id="large-then-small-buffer-then-large"),
    ],
)
def test_pieces_are_stitched_byte_identical(
    s3: S3Client, sizes: list[int], copies: int, uploads: int
) -> None:
    pieces, joined = put_pieces(s3, sizes)
    calls = S3Calls(s3)

    assert compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT)

    assert output(s3) == joined
    assert calls.counts["UploadPartCopy"] == copies
    assert calls.counts["UploadPart"] == uploads
    assert calls.counts["PutObject"] == 0
    assert calls.put_conditions == ["*"]
    head = s3.head_object(Bucket=TEST_BUCKET, Key=OUTPUT)
    assert head["ContentType"] == "application/x-ndjson"
    assert no_upload_left_open(s3)


def test_a_large_piece_after_a_small_buffer_lends_its_head_and_is_copied_from_there(s3: S3Client) -> None:
    pieces, joined = put_pieces(s3, [MIB, 10 * MIB])
    calls = S3Calls(s3)

    assert compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT, copy_concurrency=1)

    assert calls.counts["UploadPart"] == 1
    assert calls.copy_ranges == [f"bytes={4 * MIB}-{10 * MIB - 1}"]
    # The small piece, and a ranged GET of just the head the part lacked
    assert calls.counts["GetObject"] == 2
    assert output(s3) == joined


def test_a_piece_over_the_largest_part_is_copied_in_ranges(s3: S3Client) -> None:
    pieces, joined = put_pieces(s3, [21 * MIB])
    calls = S3Calls(s3)

    assert compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT, max_part_bytes=10 * MIB)

    assert output(s3) == joined
    assert calls.copy_ranges == [
        f"bytes=0-{7 * MIB - 1}",
        f"bytes={7 * MIB}-{14 * MIB - 1}",
        f"bytes={14 * MIB}-{21 * MIB - 1}",
    ]


def test_under_five_mib_in_all_is_one_conditional_put(s3: S3Client) -> None:
    pieces, joined = put_pieces(s3, [100, 0, 2 * MIB, 1])
    calls = S3Calls(s3)

    assert compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT, content_type="text/plain")

    assert output(s3) == joined
    assert calls.counts["PutObject"] == 1
    assert calls.put_conditions == ["*"]
    assert calls.counts["CreateMultipartUpload"] == 0
    assert s3.head_object(Bucket=TEST_BUCKET, Key=OUTPUT)["ContentType"] == "text/plain"


def test_no_pieces_make_an_empty_object(s3: S3Client) -> None:
    assert compose_in_order(s3, TEST_BUCKET, [Piece("never-read", 0)], OUTPUT)

    assert output(s3) == b""


@pytest.mark.parametrize("sizes", [[MIB], [6 * MIB, MIB]], ids=["one-put", "multipart"])
def test_an_existing_output_is_left_alone(s3: S3Client, sizes: list[int]) -> None:
    pieces, _ = put_pieces(s3, sizes)
    s3.put_object(Bucket=TEST_BUCKET, Key=OUTPUT, Body=b"first writer")
    calls = S3Calls(s3)

    assert not compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT)

    assert output(s3) == b"first writer"
    assert calls.counts["UploadPartCopy"] + calls.counts["UploadPart"] == 0
    assert no_upload_left_open(s3)


@pytest.mark.parametrize("sizes", [[MIB], [6 * MIB, MIB]], ids=["one-put", "multipart"])
def test_a_writer_that_wins_the_race_meanwhile_keeps_its_output(s3: S3Client, sizes: list[int]) -> None:
    # Given another writer that commits the output just before this one does
    pieces, _ = put_pieces(s3, sizes)
    other = boto3.client("s3", region_name=REGION)

    def other_writer_first(**_: Any) -> None:
        other.put_object(Bucket=TEST_BUCKET, Key=OUTPUT, Body=b"other writer")

    s3.meta.events.register_first("before-call.s3.CompleteMultipartUpload", other_writer_first)
    s3.meta.events.register_first("before-call.s3.PutObject", other_writer_first)

    assert not compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT)

    assert output(s3) == b"other writer"
    assert no_upload_left_open(s3)


@pytest.mark.parametrize(
    "sizes", [[MIB, 2 * MIB], [6 * MIB, 6 * MIB], [MIB, 6 * MIB, MIB]], ids=["one-put", "copied", "read"]
)
def test_a_missing_piece_fails_and_leaves_nothing_visible(s3: S3Client, sizes: list[int]) -> None:
    pieces, _ = put_pieces(s3, sizes)
    s3.delete_object(Bucket=TEST_BUCKET, Key=pieces[1].key)

    with pytest.raises(NotFound):
        compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT)

    assert not s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=OUTPUT).get("Contents")
    assert no_upload_left_open(s3)


def test_more_parts_than_s3_allows_is_refused_before_anything_is_sent(s3: S3Client) -> None:
    pieces = [Piece(f"piece-{i}", MIN_PART_BYTES) for i in range(MAX_PARTS + 1)]
    calls = S3Calls(s3)

    with pytest.raises(TooManyParts, match=f"expected at most {MAX_PARTS} parts, got {MAX_PARTS + 1}"):
        compose_in_order(s3, TEST_BUCKET, pieces, OUTPUT)

    assert sum(calls.counts.values()) == 0


def test_a_piece_shorter_than_its_stated_size_fails(s3: S3Client) -> None:
    pieces, _ = put_pieces(s3, [MIB, 6 * MIB])
    stated = [Piece(pieces[0].key, MIB + 10), pieces[1]]

    with pytest.raises(PieceSizeMismatch, match=f"expected {MIB + 10} bytes from offset 0, got {MIB}"):
        compose_in_order(s3, TEST_BUCKET, stated, OUTPUT)

    assert not s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=OUTPUT).get("Contents")
    assert no_upload_left_open(s3)
