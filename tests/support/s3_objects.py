"""Reading an object that a background function may not have written yet."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def read_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's body, or None while it does not exist."""
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return body
