"""Object storage primitives every writer shares: boto errors translated once, create-only writes, and
uploads that stay invisible until they are committed.

A client mistake never surfaces from here: a missing key is NotFound, a lost condition is
PreconditionFailed, and anything else is Unavailable (503), which event sources treat as transient.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from maas.config import DEFAULT_BUCKET, ENV_BUCKET, ENV_ENDPOINT_URL
from maas.errors import NotFound, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# 409 ConditionalRequestConflict: another conditional write to the key is in flight and will decide it.
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
# Failures that no retry mends: the caller has no usable credentials for the store it was pointed at.
MISSING_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"})
CREDENTIAL_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "ExpiredToken", "SignatureDoesNotMatch"})
CREDENTIALS_ADVICE = (
    "configure AWS credentials that may use the bucket (aws configure, AWS_PROFILE), or use the local "
    "stack (`make serve`)"
)
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn")
# S3 refuses parts under 5 MiB (except the last) and uploads of more than 10,000 parts.
MIN_PART_BYTES = 5 * MIB
MAX_PARTS = 10_000
# 8 MiB parts give objects up to 80 GB within the part limit; larger ones get larger parts (part_bytes_for).
DEFAULT_PART_BYTES = 8 * MIB


PartMaker = Callable[[str, int], "CompletedPartTypeDef"]
"""Makes part `number` of multipart upload `upload_id` (on a worker thread) and returns it as the completion
lists it."""


class PreconditionFailed(Exception):
    """A create-only or compare-and-swap write found the key in a state it did not expect."""


@contextmanager
def storage_errors(action: str, *, s3: S3Client | None = None, bucket: str | None = None) -> Iterator[None]:
    """Translate boto errors once: missing keys to NotFound, lost conditions to PreconditionFailed,
    anything else to Unavailable (503), since the client did nothing wrong. An Unavailable names the bucket
    and where it was looked for (`s3`'s endpoint, else the environment's), and says what to do."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:
            raise NotFound(f"{action}: not found") from None
        if code in PRECONDITION_CODES:
            raise PreconditionFailed(action) from None
        where = storage_location(action, s3=s3, bucket=bucket)
        if code == "NoSuchBucket":
            raise Unavailable(f"{action}: the bucket does not exist ({where})") from None
        advice = f"; {CREDENTIALS_ADVICE}" if code in CREDENTIAL_CODES else ""
        raise Unavailable(f"{action}: storage error {code} ({where}){advice}") from None
    except BotoCoreError as exc:
        raise Unavailable(unreachable(action, exc, s3=s3, bucket=bucket)) from None


def unreachable(action: str, exc: Exception, *, s3: S3Client | None = None, bucket: str | None = None) -> str:
    """The message of a storage call that never got an answer: what failed, where, and what to do."""
    endpoint = _endpoint_tried(exc)
    where = storage_location(action, s3=s3, bucket=bucket, endpoint_url=endpoint)
    message = f"{action}: storage unreachable ({type(exc).__name__}) {where}"
    if type(exc).__name__ in MISSING_CREDENTIALS:
        return f"{message}; {CREDENTIALS_ADVICE}"
    if _local_endpoint(_client_endpoint(s3) or endpoint or _environment_endpoint()) is not None:
        return f"{message}: nothing answers there; is the local stack running? Start it with `make serve`"
    return message


def storage_location(
    action: str, *, s3: S3Client | None = None, bucket: str | None = None, endpoint_url: str | None = None
) -> str:
    """`s3://BUCKET at ENDPOINT`, or `s3://BUCKET in AWS S3 (REGION)`; without the bucket when `action`
    already names one."""
    endpoint = _client_endpoint(s3) or endpoint_url or _environment_endpoint()
    named = "" if "s3://" in action else f"s3://{bucket or os.environ.get(ENV_BUCKET) or DEFAULT_BUCKET} "
    if endpoint and _local_endpoint(endpoint) is not None:
        return f"{named}at {endpoint}"
    region = getattr(getattr(s3, "meta", None), "region_name", None)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return f"{named}in AWS S3 ({region or 'the default region'})"


def _client_endpoint(s3: S3Client | None) -> str | None:
    # A stand-in client (a test's) may have no botocore metadata; the message must still be made.
    endpoint = getattr(getattr(s3, "meta", None), "endpoint_url", None)
    return endpoint if isinstance(endpoint, str) else None


def _environment_endpoint() -> str | None:
    return os.environ.get(ENV_ENDPOINT_URL) or None


def _endpoint_tried(exc: Exception) -> str | None:
    """The scheme and host a connection error was trying (botocore keeps the URL in its kwargs)."""
    url = getattr(exc, "kwargs", {}).get("endpoint_url")
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else None


def _local_endpoint(endpoint: str | None) -> str | None:
    """`endpoint` unless it is AWS's own (an S3-compatible store: the local stack, moto, MinIO)."""
    if not endpoint:
        return None
    host = urlsplit(endpoint).hostname or ""
    return None if host.endswith(AWS_DOMAINS) else endpoint


def object_exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        with storage_errors(f"checking s3://{bucket}/{key}", s3=s3):
            s3.head_object(Bucket=bucket, Key=key)
    except NotFound:
        return False
    return True


def put_new(
    s3: S3Client,
    bucket: str,
    key: str,
    data: bytes,
    content_type: str = "application/json",
    *,
    sha256: bytes | None = None,
) -> bool:
    """Create-only write. False when the key exists: the first writer wins, later ones change nothing.

    With `sha256` (the data's digest), S3 checks the body against it and stores it with the object."""
    try:
        with storage_errors(f"writing s3://{bucket}/{key}", s3=s3):
            if sha256 is None:
                s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
            else:
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=data,
                    ContentType=content_type,
                    IfNoneMatch="*",
                    ChecksumSHA256=sha256_checksum(sha256),
                )
    except PreconditionFailed:
        return False
    return True


def sha256_checksum(digest: bytes) -> str:
    """A sha256 digest as S3's ChecksumSHA256 field spells it (base64)."""
    return base64.b64encode(digest).decode("ascii")


def part_bytes_for(size: int, preferred: int = DEFAULT_PART_BYTES) -> int:
    """The part size for an object of `size` bytes: `preferred`, or for an object that would take more than
    MAX_PARTS of it, the smallest whole number of MiB that fits it in MAX_PARTS."""
    needed = -(-size // MAX_PARTS)
    return max(preferred, MIN_PART_BYTES, -(-needed // MIB) * MIB)


class PartsUpload:
    """A multipart upload to a key that must not exist yet: parts go up `concurrency` at a time, and the
    object appears only when `complete()` wins its create-only condition.

    `send` blocks while `concurrency` parts are in flight, so a writer holds at most that many parts (plus
    the one it is preparing) however large the object. With `checksums`, each part goes up with its
    ChecksumSHA256: S3 refuses a part whose bytes arrive different and keeps the checksum, and
    `part_sha256` lists them (hex) in order once complete. With concurrency 1 parts go up on the caller's
    thread. Until `complete()` succeeds nothing is visible; `abort()` drops what was sent.
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        concurrency: int = 1,
        checksums: bool = False,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.checksums = checksums
        self.parts_sent = 0
        self._upload_id: str | None = None
        self._completed: dict[int, CompletedPartTypeDef] = {}
        self._sha256: dict[int, str] = {}
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, "parts") if concurrency > 1 else None
        self._pending: list[Future[None]] = []
        self._failure: BaseException | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def part_sha256(self) -> list[str]:
        return [self._sha256[number] for number in sorted(self._sha256)]

    def send(self, body: bytes) -> None:
        """Upload the next part (every part but the last must be at least MIN_PART_BYTES)."""
        self.send_part(functools.partial(self._upload_part, body))

    def send_part(self, make_part: PartMaker) -> None:
        """Make the next part with `make_part(upload_id, number)`, on a worker when concurrency allows: an
        uploaded body, or a copy of another object's range (UploadPartCopy). Every part but the last must be
        at least MIN_PART_BYTES."""
        if self.parts_sent >= MAX_PARTS:
            raise Unavailable(f"{self.where}: more than {MAX_PARTS} parts")
        if self._upload_id is None:
            self._start()
        self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise self._failure
        self.parts_sent += 1
        number = self.parts_sent
        if self._pool is None:
            self._make_part(number, make_part)
            return
        self._pending.append(self._pool.submit(self._make_part, number, make_part))

    def complete(self) -> bool:
        """Make the object visible. False when the key already existed (another writer won): the upload is
        aborted. A failed part raises its error; the caller aborts."""
        self._wait()
        if self._failure is not None:
            raise self._failure
        if self._upload_id is None:
            raise RuntimeError(f"{self.where}: no part was sent")
        parts = [self._completed[number] for number in sorted(self._completed)]
        try:
            with storage_errors(f"completing {self.where}", s3=self._s3):
                self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
        except PreconditionFailed:
            self.abort()
            return False
        self._upload_id = None
        return True

    def abort(self) -> None:
        """Drop what was sent. Best effort: a failed abort leaves parts to the bucket's lifecycle rule."""
        for pending in self._pending:
            pending.cancel()
        self._wait()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                with storage_errors(f"aborting the upload of {self.where}", s3=self._s3):
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            except (NotFound, Unavailable):
                pass

    def _start(self) -> None:
        with storage_errors(f"starting the upload of {self.where}", s3=self._s3):
            if self.checksums:
                started = self._s3.create_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    ContentType=self.content_type,
                    ChecksumAlgorithm="SHA256",
                )
            else:
                started = self._s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self.content_type
                )
        self._upload_id = started["UploadId"]

    def _wait(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending = []

    def _make_part(self, number: int, make_part: PartMaker) -> None:
        assert self._upload_id is not None
        try:
            self._completed[number] = make_part(self._upload_id, number)
        except BaseException as exc:
            if self._failure is None:
                self._failure = exc
            if self._pool is None:
                raise
        finally:
            self._slots.release()

    def _upload_part(self, body: bytes, upload_id: str, number: int) -> CompletedPartTypeDef:
        where = f"uploading part {number} of {self.where}"
        if not self.checksums:
            with storage_errors(where, s3=self._s3):
                response = self._s3.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=body
                )
            return {"ETag": response["ETag"], "PartNumber": number}
        # On the worker: hashlib lets go of the GIL, so parts are hashed in parallel too.
        digest = hashlib.sha256(body).digest()
        checksum = sha256_checksum(digest)
        with storage_errors(where, s3=self._s3):
            response = self._s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumSHA256=checksum,
            )
        self._sha256[number] = digest.hex()
        return {"ETag": response["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}


class CreateOnceUpload:
    """Streams an object of any size to a key that must not exist yet, visible only once `commit()` succeeds.

    Bytes are buffered up to one part; the multipart upload starts with the first full part, so a small
    object is one conditional PUT. The upload is completed with If-None-Match, so of two writers racing for
    the key exactly one commits. Leaving the `with` block without committing aborts the upload: a failed
    writer leaves nothing visible (and the bucket's lifecycle rule reaps what a killed process leaves).
    """

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.part_bytes = part_bytes
        self.bytes_written = 0
        self._buffer = bytearray()
        self._parts: PartsUpload | None = None
        self._finished = False

    def write(self, data: bytes) -> None:
        if self._finished:
            raise RuntimeError(f"s3://{self.bucket}/{self.key}: already committed or aborted")
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self.part_bytes:
            self._send_buffer()

    def commit(self) -> bool:
        """Make the object visible. False when the key already existed (another writer won)."""
        try:
            if self._parts is None:
                created = put_new(self._s3, self.bucket, self.key, bytes(self._buffer), self.content_type)
                self._finished = True
                return created
            if self._buffer:
                self._send_buffer()
            committed = self._parts.complete()
            self._finished = True
            return committed
        finally:
            self._buffer = bytearray()

    def abort(self) -> None:
        """Drop what was written. Best effort: a failed abort leaves parts to the lifecycle rule."""
        self._finished = True
        self._buffer = bytearray()
        parts, self._parts = self._parts, None
        if parts is not None:
            parts.abort()

    def __enter__(self) -> CreateOnceUpload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._finished:
            self.abort()

    def _send_buffer(self) -> None:
        if self._parts is None:
            self._parts = PartsUpload(self._s3, self.bucket, self.key, content_type=self.content_type)
        self._parts.send(bytes(self._buffer))
        self._buffer = bytearray()
