"""The generate function's HTTP transport: answers whole (an API Gateway response, an event stream's body all
at once) or streamed (maas.api.http_stream.HttpStream), through the same routes, checks, errors and logs.

A route that answers with events hands them to `StreamedAnswers.sse`. When the invocation can stream (the
function's `stream_handler`), the events are left for the transport and the route answers only its status
and headers; otherwise they are generated there and then and joined into one body, so an error anywhere is
still an ordinary error status. Once a stream has started, an error can only travel as its last event.

Under /openai/ every error, the transport's own included (404, 405, 413, 415), takes OpenAI's shape.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from maas.api.http_body import read_body
from maas.api.http_stream import INTERNAL_ERROR, SSE_MEDIA_TYPE, HttpStream
from maas.api.http_transport import MultiFormatApp
from maas.api.routing import ServedRoutes
from maas.config import ENV_MAX_RESPONSE_BYTES, Settings
from maas.errors import InvalidInput, MaasError, PayloadTooLarge
from maas.observability import MetricUnit, logger, metrics
from maas.protocol.validation_messages import describe_validation_error

Body = TypeVar("Body", bound=BaseModel)
# An event stream's answer must not be cached or buffered by anything between us and the client.
STREAM_HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache"}
# The V2 routes' headers (maas.api.v2_routes), named again so this function's cold start skips the tensor
# codecs those routes import.
MODEL_VERSION_HEADER = "x-maas-model-version"
ROUTING_KEY_HEADER = "x-maas-routing-key"

ErrorEvent = Callable[[MaasError], bytes]
ErrorShape = Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any]]


def decode_body(event: BaseProxyEvent, model: type[Body], settings: Settings) -> Body:
    """The request's JSON body as `model`, within the request limits; UTF-8 only."""
    raw = read_body(event, settings.max_request_bytes, compressed=settings.compressed_bodies)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("body: expected UTF-8 JSON, got bytes that are not UTF-8") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        # Free-form fields (tools, metadata) are refused unless empty, so the parser's own recursion limit
        # is the only depth bound that needs naming.
        raise InvalidInput(describe_validation_error(exc, max_json_depth=settings.max_json_depth)) from None


def check_response_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"response: expected at most {limit} bytes ({ENV_MAX_RESPONSE_BYTES}, Lambda's payload limit), "
            f"got {size}; ask for fewer choices, tokens or logprobs, or stream"
        )


@dataclass
class PendingStream:
    """What a route left for the streaming transport: the events still to generate."""

    chunks: Iterator[bytes] | None = None


class StreamedAnswers:
    """Per app: whether the invocation being answered streams, and where its route leaves the events."""

    def __init__(self, max_whole_bytes: int) -> None:
        self.max_whole_bytes = max_whole_bytes
        self._pending: ContextVar[PendingStream | None] = ContextVar("maas_pending_stream", default=None)

    @contextmanager
    def streaming(self) -> Iterator[PendingStream]:
        pending = PendingStream()
        token = self._pending.set(pending)
        try:
            yield pending
        finally:
            self._pending.reset(token)

    def sse(
        self, events: Iterator[bytes], error_event: ErrorEvent, headers: Mapping[str, str] | None = None
    ) -> Response[Any]:
        answer_headers = {**STREAM_HEADERS, **(headers or {})}
        pending = self._pending.get()
        if pending is None:
            body = b"".join(events)
            check_response_size(len(body), self.max_whole_bytes)
            return Response(200, SSE_MEDIA_TYPE, body.decode(), answer_headers)
        pending.chunks = _after_first_byte(events, error_event)
        return Response(200, SSE_MEDIA_TYPE, "", answer_headers)


def _after_first_byte(events: Iterator[bytes], error_event: ErrorEvent) -> Iterator[bytes]:
    """The events, ending in an error event if generating them fails: the status is already on the wire.

    They are generated after the Lambda edge has flushed the invocation's metrics, so they flush their own."""
    try:
        yield from events
    except MaasError as exc:
        logger.warning(
            "stream failed after its first byte", extra={"status": exc.status, "error": exc.message}
        )
        metrics.add_metric(name=f"Errors{exc.status}", unit=MetricUnit.Count, value=1)
        yield error_event(exc)
    except Exception as exc:
        # The traceback, not the message: an exception's text can quote the payload that caused it.
        logger.error(
            "unhandled error in a stream",
            extra={
                "error_type": type(exc).__name__,
                "traceback": "".join(traceback.format_tb(exc.__traceback__)),
            },
        )
        metrics.add_metric(name="Errors500", unit=MetricUnit.Count, value=1)
        yield error_event(MaasError(INTERNAL_ERROR))
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()


class GenerationHttpApp:
    """The generate function's routes over every API Gateway payload format, answered whole or streamed."""

    def __init__(self, routes: ServedRoutes, answers: StreamedAnswers, error_shape: ErrorShape) -> None:
        self.routes = routes
        self.answers = answers
        self._app = MultiFormatApp(routes)
        self._error_shape = error_shape

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        return self._error_shape(event, self._app.resolve(event, context))


def as_http_stream(response: Mapping[str, Any], pending: PendingStream) -> HttpStream:
    """A whole answer (an API Gateway response) as a stream: the route's events when it left any, else the
    body as one chunk."""
    headers = {str(name): str(value) for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[str(name)] = ", ".join(str(value) for value in values)
    chunks = pending.chunks
    if chunks is None:
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
        chunks = iter([data] if data else [])
    return HttpStream(status=int(response["statusCode"]), headers=headers, chunks=chunks)


def error_message(response: Mapping[str, Any]) -> str | None:
    """The message of an error answer in maas's shape ({"error": "..."}), or None for any other answer."""
    if int(response.get("statusCode", 200)) < 400 or response.get("isBase64Encoded"):
        return None
    try:
        body = json.loads(response.get("body") or "")
    except ValueError:
        return None
    message = body.get("error") if isinstance(body, dict) else None
    return message if isinstance(message, str) else None


def request_path(event: Mapping[str, Any]) -> str:
    """The request's path in any payload format (HTTP API and Function URL: rawPath; REST API: path)."""
    path = event.get("rawPath") or event.get("path") or ""
    return path if isinstance(path, str) else ""
