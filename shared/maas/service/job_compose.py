"""Stitching pieces (a sharded job's outputs) into one create-only object, in order, server-side where S3
allows it.

A multipart upload's parts may be copied from other objects (UploadPartCopy), so a large piece never
passes through the function. S3 refuses parts under 5 MiB but the last, so small pieces, and the head of a
large piece that must complete a part begun with small ones, are read and joined into uploaded parts. The
object appears whole when the upload completes with If-None-Match, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maas.objects import (
    MAX_PARTS,
    MIN_PART_BYTES,
    PartMaker,
    PartsUpload,
    object_exists,
    put_new,
    storage_errors,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

# S3's largest part, and so the largest range one UploadPartCopy may copy.
MAX_PART_BYTES = 5 * 1024**3
DEFAULT_COPY_CONCURRENCY = 8


class TooManyParts(ValueError):
    """The pieces need more parts than S3 allows in one multipart upload."""


class PieceSizeMismatch(Exception):
    """A piece holds a different number of bytes than its stated size: it changed, or the size is wrong."""


@dataclass(frozen=True, slots=True)
class Piece:
    """An object to stitch in, and its size in bytes."""

    key: str
    size: int


@dataclass(frozen=True, slots=True)
class PieceRange:
    """Bytes [start, end) of one piece."""

    key: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ComposedPart:
    """One part of the upload: copied server-side from one piece's range, or read from `ranges` and
    uploaded."""

    ranges: tuple[PieceRange, ...]
    copied: bool

    @property
    def size(self) -> int:
        return sum(piece_range.size for piece_range in self.ranges)


def compose_in_order(
    s3: S3Client,
    bucket: str,
    pieces: Sequence[Piece],
    key: str,
    *,
    content_type: str = "application/x-ndjson",
    min_part_bytes: int = MIN_PART_BYTES,
    max_part_bytes: int = MAX_PART_BYTES,
    copy_concurrency: int = DEFAULT_COPY_CONCURRENCY,
) -> bool:
    """Write the pieces' bytes, in order, to `key`, which must not exist yet. False: it already existed
    (another writer won), and nothing else is visible. Any failure aborts the upload and is raised.

    Empty pieces are skipped (never read). Under `min_part_bytes` in all, it is one conditional PUT."""
    parts = compose_parts(pieces, min_part_bytes=min_part_bytes, max_part_bytes=max_part_bytes)
    if sum(part.size for part in parts) < min_part_bytes:
        body = b"".join(_read(s3, bucket, piece_range) for part in parts for piece_range in part.ranges)
        return put_new(s3, bucket, key, body, content_type)
    if len(parts) > MAX_PARTS:
        raise TooManyParts(
            f"s3://{bucket}/{key}: expected at most {MAX_PARTS} parts, got {len(parts)} from {len(pieces)} "
            "pieces"
        )
    # A completed upload would be refused anyway; checking first spares copying what nobody will see.
    if object_exists(s3, bucket, key):
        return False
    upload = PartsUpload(s3, bucket, key, content_type=content_type, concurrency=copy_concurrency)
    try:
        for part in parts:
            upload.send_part(_part_maker(s3, bucket, key, part))
        return upload.complete()
    except BaseException:
        upload.abort()
        raise


def compose_parts(
    pieces: Sequence[Piece], *, min_part_bytes: int = MIN_PART_BYTES, max_part_bytes: int = MAX_PART_BYTES
) -> list[ComposedPart]:
    """The upload's parts, in order: every part but the last at least `min_part_bytes`, none over
    `max_part_bytes`. A piece of at least `min_part_bytes` that begins a part is copied (in ranges of at
    most `max_part_bytes`); smaller pieces are joined until a part is full, taking the head of a large piece
    when one comes next."""
    if min_part_bytes < 1 or max_part_bytes < 2 * min_part_bytes:
        raise ValueError(
            f"expected 1 <= min_part_bytes and max_part_bytes >= 2 x min_part_bytes, got {min_part_bytes} "
            f"and {max_part_bytes}"
        )
    parts: list[ComposedPart] = []
    joined: list[PieceRange] = []
    for piece in pieces:
        if piece.size < 0:
            raise ValueError(f"{piece.key}: expected a size of at least 0 bytes, got {piece.size}")
        start = 0
        if joined and piece.size >= min_part_bytes:
            # The part begun with small pieces is filled from this one's head; the rest may be copied.
            start = min_part_bytes - sum(piece_range.size for piece_range in joined)
            joined.append(PieceRange(piece.key, 0, start))
            parts.append(ComposedPart(tuple(joined), copied=False))
            joined = []
        rest = piece.size - start
        if rest >= min_part_bytes:
            parts += [
                ComposedPart((PieceRange(piece.key, first, last),), copied=True)
                for first, last in _copy_ranges(start, piece.size, max_part_bytes)
            ]
        elif rest > 0:
            joined.append(PieceRange(piece.key, start, piece.size))
            if sum(piece_range.size for piece_range in joined) >= min_part_bytes:
                parts.append(ComposedPart(tuple(joined), copied=False))
                joined = []
    if joined:
        parts.append(ComposedPart(tuple(joined), copied=False))
    return parts


def _copy_ranges(start: int, end: int, max_part_bytes: int) -> list[tuple[int, int]]:
    """[start, end) in as few near-equal ranges of at most `max_part_bytes` as it takes; each is over half
    of `max_part_bytes` when there are several, so at least the minimum part."""
    count = -(-(end - start) // max_part_bytes)
    size, longer = divmod(end - start, count)
    ranges: list[tuple[int, int]] = []
    first = start
    for index in range(count):
        last = first + size + (1 if index < longer else 0)
        ranges.append((first, last))
        first = last
    return ranges


def _read(s3: S3Client, bucket: str, piece_range: PieceRange) -> bytes:
    where = f"s3://{bucket}/{piece_range.key}"
    with storage_errors(f"reading bytes {piece_range.start}-{piece_range.end - 1} of {where}", s3=s3):
        response = s3.get_object(
            Bucket=bucket, Key=piece_range.key, Range=f"bytes={piece_range.start}-{piece_range.end - 1}"
        )
        data = response["Body"].read()
    if len(data) != piece_range.size:
        raise PieceSizeMismatch(
            f"{where}: expected {piece_range.size} bytes from offset {piece_range.start}, got {len(data)}"
        )
    return data


def _part_maker(s3: S3Client, bucket: str, key: str, part: ComposedPart) -> PartMaker:
    def copy(upload_id: str, number: int) -> CompletedPartTypeDef:
        (source,) = part.ranges
        where = f"copying s3://{bucket}/{source.key} into part {number} of s3://{bucket}/{key}"
        with storage_errors(where, s3=s3):
            response = s3.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": source.key},
                CopySourceRange=f"bytes={source.start}-{source.end - 1}",
            )
        return {"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number}

    def join(upload_id: str, number: int) -> CompletedPartTypeDef:
        body = b"".join(_read(s3, bucket, piece_range) for piece_range in part.ranges)
        with storage_errors(f"uploading part {number} of s3://{bucket}/{key}", s3=s3):
            response = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        return {"ETag": response["ETag"], "PartNumber": number}

    return copy if part.copied else join
