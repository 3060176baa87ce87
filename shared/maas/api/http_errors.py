"""How an HTTP answer reports a failure: the {"error": message} body and what goes to the log.

Shared by the router's error handlers and the infer fast path, which answers without the router. A
server-side failure is logged with its status and message (a MaasError's message names fields, never
payload values); an unexpected exception with its type and traceback only, as its text can quote the
payload.
"""

from __future__ import annotations

import json
import traceback

from maas.errors import MaasError
from maas.observability import logger

INTERNAL_ERROR_MESSAGE = "internal error; see the function's logs"


def error_body(message: str) -> str:
    """The body maas.protocol.v2_types.ErrorResponse documents, byte for byte, written without it: the
    registry function would otherwise import (and build) the V2 wire types for its errors alone."""
    return json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":"))


def log_failure(exc: MaasError) -> None:
    if exc.status >= 500:
        logger.error("request failed", extra={"status": exc.status, "error": exc.message})


def log_unexpected(exc: Exception) -> None:
    logger.error(
        "unhandled error",
        extra={
            "error_type": type(exc).__name__,
            "traceback": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )
