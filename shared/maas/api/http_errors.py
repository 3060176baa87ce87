"""How an HTTP answer reports a failure: the {"error": message} body and what goes to the log.

Shared by the router's error handlers and the infer fast path, which answers without the router. A
server-side failure is logged with its status and message (a MaasError's message names fields, never
payload values); an unexpected exception with its type and traceback only, as its text can quote the
payload.
"""

from __future__ import annotations

import traceback

from maas.errors import MaasError
from maas.observability import logger
from maas.protocol.v2_types import ErrorResponse

INTERNAL_ERROR_MESSAGE = "internal error; see the function's logs"


def error_body(message: str) -> str:
    return ErrorResponse(error=message).model_dump_json()


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
