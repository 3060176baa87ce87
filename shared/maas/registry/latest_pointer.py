"""The `latest` pointer: `models/<name>/latest.json`, a byte-for-byte copy of the manifest of the newest
version that is not archived (decision 0024).

A bare name (with no default alias set) and `name@latest` used to cost a listing of every version folder
and a metadata read per version; with the pointer they cost one GET, which also brings the manifest, so the
load that follows starts with the artifacts. The object's metadata carries the version number (what a writer
compares without reading the body) and, with MAAS_MANIFEST_SIGNING, the manifest's `manifest.sig` document,
so a reader verifies the copy exactly as it verifies `manifest.json`.

The pointer is moved by compare-and-swap only (If-Match on the ETag a writer read, If-None-Match when it is
absent): a publish moves it up, never down; archiving or deleting the version it names moves it down to the
newest version still ready, or deletes it when none is. Readers that find no pointer (a registry published
before it existed) list the versions as before.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maas.errors import IntegrityError, NotFound
from maas.objects import PreconditionFailed, storage_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LATEST_POINTER_FILE = "latest.json"
# x-amz-meta-* keys (S3 lower-cases them): the version the copy is of, and its signature document (base64,
# since a header value is one line of ASCII).
VERSION_METADATA = "maas-version"
SIGNATURE_METADATA = "maas-manifest-signature"


@dataclass(frozen=True, slots=True)
class PointerCopy:
    """What a reader gets: the version, its manifest's exact bytes, and their signature document if any."""

    version: int
    manifest: bytes
    signature: str | None


@dataclass(frozen=True, slots=True)
class PointerState:
    """What a writer compares against: the version the pointer names now and the ETag to swap it by."""

    version: int
    etag: str


def read_pointer(s3: S3Client, bucket: str, key: str, *, what: str) -> PointerCopy | None:
    """The pointer's copy, or None when there is none."""
    try:
        with storage_errors(f"reading {what}"):
            response = s3.get_object(Bucket=bucket, Key=key)
            body = response["Body"].read()
    except NotFound:
        return None
    metadata = response.get("Metadata", {})
    version = _version_of(metadata, key, what)
    encoded = metadata.get(SIGNATURE_METADATA)
    signature = None
    if encoded is not None:
        try:
            signature = base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")
        except binascii.Error:
            raise IntegrityError(
                f"{what}: expected a base64 signature in its metadata, got something else", detail=key
            ) from None
    return PointerCopy(version, body, signature)


def pointer_state(s3: S3Client, bucket: str, key: str, *, what: str) -> PointerState | None:
    """The version the pointer names and its ETag (one HEAD), or None when there is none."""
    try:
        with storage_errors(f"checking {what}"):
            response = s3.head_object(Bucket=bucket, Key=key)
    except NotFound:
        return None
    return PointerState(_version_of(response.get("Metadata", {}), key, what), response["ETag"])


def write_pointer(
    s3: S3Client,
    bucket: str,
    key: str,
    copy: PointerCopy,
    *,
    etag: str | None,
    what: str,
) -> bool:
    """Compare-and-swap write: over exactly the object with `etag`, or only if absent when None. False when
    another writer got there first."""
    metadata = {VERSION_METADATA: str(copy.version)}
    if copy.signature is not None:
        metadata[SIGNATURE_METADATA] = base64.b64encode(copy.signature.encode()).decode("ascii")
    # Only over the object the writer read, or only where there is none.
    condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
    try:
        with storage_errors(f"writing {what}"):
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=copy.manifest,
                ContentType="application/json",
                Metadata=metadata,
                **condition,  # type: ignore[arg-type]
            )
    except PreconditionFailed:
        return False
    return True


def delete_pointer(s3: S3Client, bucket: str, key: str, *, etag: str, what: str) -> bool:
    """Compare-and-swap delete of exactly the object with `etag`. False when it changed in between."""
    try:
        with storage_errors(f"deleting {what}"):
            s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except (PreconditionFailed, NotFound):
        return False
    return True


def _version_of(metadata: dict[str, str], key: str, what: str) -> int:
    text = metadata.get(VERSION_METADATA, "")
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise IntegrityError(
            f"{what}: expected the version it points at in its metadata, got none", detail=f"{key}: {text!r}"
        )
    return int(text)
