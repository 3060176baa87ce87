"""The registry's plain storage calls: compare-and-swap writes of its mutable documents (aliases, version
metadata), the multi-object deletes that retire a version folder, and listings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from maas.errors import Unavailable
from maas.objects import PreconditionFailed, storage_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

# S3's most keys per DeleteObjects request.
DELETE_BATCH = 1000


def write_document(
    s3: S3Client, bucket: str, key: str, document: BaseModel, *, etag: str | None
) -> str | None:
    """Compare-and-swap write: with `etag`, only over that exact object; without, only if absent.

    Returns the new ETag, or None when another writer got there first."""
    body = document.model_dump_json().encode()
    try:
        with storage_errors(f"writing s3://{bucket}/{key}"):
            if etag is None:
                response = s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            else:
                response = s3.put_object(Bucket=bucket, Key=key, Body=body, IfMatch=etag)
    except PreconditionFailed:
        return None
    return response["ETag"]


def delete_document(s3: S3Client, bucket: str, key: str, *, etag: str) -> bool:
    """Compare-and-swap delete: only the exact object read. False when it changed in between."""
    try:
        with storage_errors(f"deleting s3://{bucket}/{key}"):
            s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except PreconditionFailed:
        return False
    return True


def delete_keys(s3: S3Client, bucket: str, keys: list[str]) -> None:
    with storage_errors(f"deleting {len(keys)} objects from s3://{bucket}"):
        for start in range(0, len(keys), DELETE_BATCH):
            chunk: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + DELETE_BATCH]
            ]
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
            # A multi-object delete answers 200 even when single keys fail; those must not pass silently.
            failed = response.get("Errors", [])
            if failed:
                raise Unavailable(
                    f"deleting from s3://{bucket}: {len(failed)} objects failed "
                    f"({failed[0].get('Code', 'unknown error')})"
                )


def list_keys(s3: S3Client, bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix`. Page by page rather than through a paginator: botocore loads its paginator
    models on first use, about 10 ms of a cold start that falls back to listing."""
    keys: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)  # type: ignore[arg-type]
        keys.extend(item["Key"] for item in page.get("Contents", []))
        if not page.get("IsTruncated"):
            return keys
        token = {"ContinuationToken": page["NextContinuationToken"]}
