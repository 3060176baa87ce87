"""One artifact from S3 into a file, verified as it lands (ADR 0021).

An artifact uploaded in parts is fetched as one ranged GET per part, `concurrency` at a time, each written
with os.pwrite at its offset and hashed as it arrives: the part's sha256 is checked against the manifest the
moment its last byte lands, so a multi-GB file is verified without a second read. The manifest lists every
part's sha256 (and its signature covers them), so parts that all match are the file the manifest describes.
An artifact without parts is one streamed GET, hashed whole while it is written.

Whatever fails, the target is removed: a half-written or unverified file never stays behind. Only what
failed is named (the artifact, the part and its byte range), never any of the content.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    FlexibleChecksumError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from maas.errors import InsufficientStorage, IntegrityError, Unavailable
from maas.objects import MIB, storage_errors
from maas.registry.integrity import integrity_failure
from maas.registry.manifest import HASH_CHUNK_BYTES, Artifact

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Ranged GETs in flight per artifact (ADR 0021): at S3's ~88 MB/s per request, 16 is about what fills
# 10 Gb/s, and half the registry client's 32 pooled connections.
DOWNLOAD_CONCURRENCY = 16
# botocore retries a GET until its answer starts; a body that breaks off midway (or fails botocore's own
# check of a whole object's stored checksum, damaged in transit) is fetched again from the part's start, at
# most this many times in all.
STREAM_ATTEMPTS = 3
BROKEN_STREAM_ERRORS = (
    ReadTimeoutError,
    IncompleteReadError,
    ResponseStreamingError,
    ConnectionClosedError,
    FlexibleChecksumError,
)


@dataclass(frozen=True, slots=True)
class _Piece:
    """A byte range to fetch and the sha256 it must have: one part, or the whole artifact (number None)."""

    number: int | None
    offset: int
    length: int
    sha256: str

    @property
    def end(self) -> int:
        return self.offset + self.length

    def label(self, parts: int) -> str:
        if self.number is None:
            return ""
        return f": part {self.number} of {parts} (bytes {self.offset}-{self.end - 1})"


def read_artifact(s3: S3Client, bucket: str, key: str, artifact: Artifact, *, what: str) -> bytes:
    """The object at `key` in memory, its size and sha256 checked against `artifact` as it streams: for
    small files (a tokenizer, a graph whose weights are external data)."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    with storage_errors(f"reading {what}"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(HASH_CHUNK_BYTES):
            digest.update(chunk)
            chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) != artifact.bytes or digest.hexdigest() != artifact.sha256:
        raise IntegrityError(
            f"{what}: expected the sha256 and size in its manifest, got different content; "
            "refusing to load it"
        )
    return data


def download_artifact(
    s3: S3Client,
    bucket: str,
    key: str,
    artifact: Artifact,
    target: Path,
    *,
    what: str,
    concurrency: int = DOWNLOAD_CONCURRENCY,
) -> None:
    """Write the object at `key` into `target`, verified against `artifact` as it lands.

    `what` names the artifact in errors ("artifact 'model.onnx.data' of model 'm' v3"). A mismatch is an
    IntegrityError; any failure removes `target` and propagates."""
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            _reserve(descriptor, artifact.bytes)
            fetch = _Fetch(s3, bucket, key, artifact, descriptor=descriptor, what=what)
            if artifact.parts is None:
                fetch.piece(_Piece(None, 0, artifact.bytes, artifact.sha256))
            else:
                fetch.in_parallel(concurrency)
        finally:
            os.close(descriptor)
    except OSError as exc:
        target.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # The load's budget saw room, but the disk filled since (another process, another file).
            free = shutil.disk_usage(target.parent).free
            raise InsufficientStorage(
                f"{what}: expected {-(-artifact.bytes // MIB)} MB of temp space for it in {target.parent}, "
                f"got a full disk ({free // MIB} MB free after removing it); raise the template parameter "
                "EphemeralStorageSize (up to 10240 MB)"
            ) from None
        raise
    except BaseException:
        target.unlink(missing_ok=True)
        raise


class _Fetch:
    """One artifact's download into an open file: its pieces fetched, written at their offsets and checked."""

    def __init__(
        self, s3: S3Client, bucket: str, key: str, artifact: Artifact, *, descriptor: int, what: str
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.artifact = artifact
        self.descriptor = descriptor
        self.what = what
        self.parts = len(artifact.parts.sha256) if artifact.parts is not None else 1
        # Set on the first failure: the other parts stop at their next chunk instead of finishing.
        self._stop = threading.Event()

    def in_parallel(self, concurrency: int) -> None:
        assert self.artifact.parts is not None
        pieces = [
            _Piece(number, offset, length, sha256)
            for number, ((offset, length), sha256) in enumerate(
                zip(self.artifact.parts.ranges(self.artifact.bytes), self.artifact.parts.sha256, strict=True),
                start=1,
            )
        ]
        with ThreadPoolExecutor(min(concurrency, len(pieces)), "artifact-parts") as pool:
            futures = [pool.submit(self.piece, piece) for piece in pieces]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                self._stop.set()
                for future in futures:
                    future.cancel()
                raise

    def piece(self, piece: _Piece) -> None:
        for attempt in range(1, STREAM_ATTEMPTS + 1):
            try:
                self._fetch_once(piece)
                return
            except BROKEN_STREAM_ERRORS as exc:
                if attempt == STREAM_ATTEMPTS or self._stop.is_set():
                    raise Unavailable(
                        f"reading {self.what}{piece.label(self.parts)}: the download broke off {attempt} "
                        f"times ({type(exc).__name__})"
                    ) from None

    def _fetch_once(self, piece: _Piece) -> None:
        where = piece.label(self.parts)
        with storage_errors(f"reading {self.what}{where}"):
            try:
                if piece.number is None:
                    response = self._s3.get_object(Bucket=self.bucket, Key=self.key)
                else:
                    response = self._s3.get_object(
                        Bucket=self.bucket, Key=self.key, Range=f"bytes={piece.offset}-{piece.end - 1}"
                    )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    raise self._mismatch(where, "a range past the object's end") from None
                raise
        body = response["Body"]
        try:
            if piece.number is None:
                if response["ContentLength"] != piece.length:
                    raise self._mismatch(where, f"an object of {response['ContentLength']} bytes")
            else:
                expected = f"bytes {piece.offset}-{piece.end - 1}/{self.artifact.bytes}"
                answered = response.get("ContentRange")
                if answered != expected:
                    raise self._mismatch(where, f"Content-Range {answered!r} where {expected!r} was asked")
            digest = hashlib.sha256()
            position = piece.offset
            for chunk in body.iter_chunks(HASH_CHUNK_BYTES):
                if self._stop.is_set():
                    return
                if position + len(chunk) > piece.end:
                    raise self._mismatch(where, "more bytes than its range")
                _write_at(self.descriptor, chunk, position)
                digest.update(chunk)
                position += len(chunk)
            if position != piece.end:
                raise self._mismatch(where, f"{position - piece.offset} of its {piece.length} bytes")
            if digest.hexdigest() != piece.sha256:
                raise self._mismatch(where, "different content", f"sha256 {digest.hexdigest()}")
        finally:
            body.close()

    def _mismatch(self, where: str, got: str, detail: str = "") -> IntegrityError:
        message = (
            f"{self.what}{where}: expected the sha256 and size in its manifest, got {got}; "
            "refusing to load it"
        )
        return integrity_failure(message, detail=f"s3://{self.bucket}/{self.key}{where}: {detail or got}")


def _reserve(descriptor: int, size: int) -> None:
    """Take the file's whole size on disk before the first byte is fetched: a disk that cannot hold it fails
    here (ENOSPC), not part way through. Where the platform or filesystem cannot reserve (macOS has no
    posix_fallocate), the file is only sized."""
    if size == 0:
        return
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(descriptor, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
    os.ftruncate(descriptor, size)


def _write_at(descriptor: int, data: bytes, position: int) -> None:
    written = 0
    view = memoryview(data)
    while written < len(data):
        written += os.pwrite(descriptor, view[written:], position + written)
