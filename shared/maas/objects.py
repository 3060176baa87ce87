"""Object storage primitives every writer shares: boto errors translated once, create-only writes, and an
upload that stays invisible until it is committed.

A client mistake never surfaces from here: a missing key is NotFound, a lost condition is
PreconditionFailed, and anything else is Unavailable (503), which event sources treat as transient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from maas.errors import NotFound, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# 409 ConditionalRequestConflict: another conditional write to the key is in flight and will decide it.
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
# S3's minimum part size is 5 MiB; 8 MiB parts give outputs up to 80 GB within the 10,000-part limit.
DEFAULT_PART_BYTES = 8 * 1024 * 1024
MAX_PARTS = 10_000


class PreconditionFailed(Exception):
    """A create-only or compare-and-swap write found the key in a state it did not expect."""


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Translate boto errors once: missing keys to NotFound, lost conditions to PreconditionFailed,
    anything else to Unavailable (503), since the client did nothing wrong."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:
            raise NotFound(f"{action}: not found") from None
        if code in PRECONDITION_CODES:
            raise PreconditionFailed(action) from None
        if code == "NoSuchBucket":
            raise Unavailable(f"{action}: the bucket does not exist") from None
        raise Unavailable(f"{action}: storage error {code}") from None
    except BotoCoreError as exc:
        raise Unavailable(f"{action}: storage unreachable ({type(exc).__name__})") from None


def object_exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        with storage_errors(f"checking s3://{bucket}/{key}"):
            s3.head_object(Bucket=bucket, Key=key)
    except NotFound:
        return False
    return True


def put_new(s3: S3Client, bucket: str, key: str, data: bytes, content_type: str = "application/json") -> bool:
    """Create-only write. False when the key exists: the first writer wins, later ones change nothing."""
    try:
        with storage_errors(f"writing s3://{bucket}/{key}"):
            s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
    except PreconditionFailed:
        return False
    return True


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
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._finished = False

    def write(self, data: bytes) -> None:
        if self._finished:
            raise RuntimeError(f"s3://{self.bucket}/{self.key}: already committed or aborted")
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self.part_bytes:
            self._upload_part()

    def commit(self) -> bool:
        """Make the object visible. False when the key already existed (another writer won)."""
        where = f"s3://{self.bucket}/{self.key}"
        try:
            if self._upload_id is None:
                created = put_new(self._s3, self.bucket, self.key, bytes(self._buffer), self.content_type)
                self._finished = True
                return created
            if self._buffer:
                self._upload_part()
            try:
                with storage_errors(f"completing {where}"):
                    self._s3.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=self.key,
                        UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts},
                        IfNoneMatch="*",
                    )
            except PreconditionFailed:
                self.abort()
                return False
            self._finished = True
            return True
        finally:
            self._buffer = bytearray()

    def abort(self) -> None:
        """Drop what was written. Best effort: a failed abort leaves parts to the lifecycle rule."""
        self._finished = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                with storage_errors(f"aborting the upload of s3://{self.bucket}/{self.key}"):
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            except (NotFound, Unavailable):
                pass

    def __enter__(self) -> CreateOnceUpload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._finished:
            self.abort()

    def _upload_part(self) -> None:
        where = f"s3://{self.bucket}/{self.key}"
        if len(self._parts) >= MAX_PARTS:
            raise Unavailable(f"{where}: more than {MAX_PARTS} parts of {self.part_bytes} bytes")
        if self._upload_id is None:
            with storage_errors(f"starting the upload of {where}"):
                started = self._s3.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType=self.content_type
                )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        with storage_errors(f"uploading part {number} of {where}"):
            response = self._s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})
        self._buffer = bytearray()
