"""Reading a request body out of an API Gateway or Function URL event, within the configured limits.

API Gateway hands binary bodies over base64-encoded; they are decoded exactly once, and tensor data is then
viewed in place (see tensor_codec). Compressed bodies (tritonclient's request_compression_algorithm) are
inflated with a bound, so a small gzip bomb cannot exhaust memory.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Mapping

from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from maas.config import ENV_COMPRESSED_BODIES, ENV_MAX_REQUEST_BYTES
from maas.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

# JSON, Triton's binary format, and what curl sends without -H (treated as JSON, as Triton does).
ACCEPTED_MEDIA_TYPES = (
    "application/json",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "text/plain",
)
_DECIMAL = re.compile(r"[0-9]{1,18}")
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def header(event: BaseProxyEvent, name: str) -> str | None:
    # The raw event's dict: Powertools' `event.headers` builds a new case-insensitive copy on every read.
    headers: Mapping[str, str] = event.raw_event.get("headers") or {}
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    # HTTP API and Function URL events already lowercase header names: one lookup, no scan.
    value = headers.get(wanted)
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def read_body(event: BaseProxyEvent, max_bytes: int, *, compressed: bool = True) -> str | bytes:
    """The request body as sent by the client: str for plain JSON, bytes when it arrived base64-encoded.

    `compressed=False` (MAAS_COMPRESSED_BODIES off) refuses any Content-Encoding but identity."""
    _check_media_type(header(event, "content-type"))
    raw = event.body or ""
    body: str | bytes
    if event.is_base64_encoded:
        if len(raw) // 4 * 3 > max_bytes + 2:
            raise _too_large(len(raw) // 4 * 3, max_bytes)
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                "body: expected base64 (the event says isBase64Encoded), got invalid base64"
            ) from None
    else:
        body = raw
    if len(body) > max_bytes:
        raise _too_large(len(body), max_bytes)
    encoding = (header(event, "content-encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if not compressed:
        raise UnsupportedMediaType(
            f"Content-Encoding: expected identity, as compressed bodies are off ({ENV_COMPRESSED_BODIES}), "
            f"got {encoding[:32]!r}"
        )
    if encoding not in _ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding: expected gzip, deflate or identity, got {encoding[:32]!r}"
        )
    return _inflate(body.encode("utf-8") if isinstance(body, str) else body, encoding, max_bytes)


def header_length(event: BaseProxyEvent, name: str) -> int | None:
    value = header(event, name)
    if value is None:
        return None
    text = value.strip()
    # ASCII digits only, and few enough that int() neither fails nor does big-number work.
    if not _DECIMAL.fullmatch(text):
        raise InvalidInput(f"{name}: expected a non-negative integer of at most 18 digits")
    return int(text)


def _check_media_type(content_type: str | None) -> None:
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type not in ACCEPTED_MEDIA_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type: expected application/json or application/octet-stream, got {media_type[:64]!r}"
        )


def _inflate(data: bytes, encoding: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(_ENCODINGS[encoding])
    try:
        inflated = inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        raise InvalidInput(
            f"body: expected {encoding}-compressed data, got data that does not inflate"
        ) from None
    if len(inflated) > max_bytes or inflater.unconsumed_tail:
        raise _too_large(max_bytes + 1, max_bytes, inflated=True)
    return inflated


def _too_large(size: int, limit: int, *, inflated: bool = False) -> PayloadTooLarge:
    what = "inflated body" if inflated else "body"
    return PayloadTooLarge(
        f"{what}: expected at most {limit} bytes ({ENV_MAX_REQUEST_BYTES}), "
        f"got {'more' if inflated else size}"
    )
