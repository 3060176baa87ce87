"""The OpenAI-compatible routes under /openai/v1/ over the completion service, and OpenAI's error shape.

Routes only translate: body in, service call, answer out (JSON, or Server-Sent Events ending in
`data: [DONE]` when the request says stream). Errors are mapped once by the transport, in maas's shape, and
reshaped here into OpenAI's {"error": {"message", "type", "param", "code"}}; `param` is the field a message
names first, as every maas message starts with the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from maas.api.generation_http import (
    MODEL_VERSION_HEADER,
    ROUTING_KEY_HEADER,
    StreamedAnswers,
    check_response_size,
    decode_body,
    error_message,
    request_path,
)
from maas.api.http_body import header
from maas.api.http_stream import SSE_DONE, sse_event
from maas.api.route_table import (
    OPENAI_CHAT_COMPLETIONS,
    OPENAI_COMPLETIONS,
    OPENAI_LIST_MODELS,
    OPENAI_MODEL,
)
from maas.api.routing import ServedRoutes, json_response, remaining_time
from maas.errors import MaasError
from maas.protocol.openai_types import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    OpenAIError,
    OpenAIErrorResponse,
)
from maas.service.completions import CompletionService, RequestContext
from maas.service.completions_openai import ChatRun, CompletionRun

# "messages[0].content: expected ..." names messages[0].content; "model 'x': not found" names no field.
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\]|\.[A-Za-z_][A-Za-z0-9_]*)*): ")
# Messages that start with a part of the HTTP request rather than one of the body's fields.
_NOT_PARAMETERS = frozenset({"body", "route", "method", "event", "response"})


def register_openai_routes(
    routes: ServedRoutes, service: CompletionService, answers: StreamedAnswers
) -> None:
    settings = service.settings
    router = routes.router

    def context() -> RequestContext:
        return RequestContext(
            routing_key=header(router.current_event, ROUTING_KEY_HEADER), remaining_ms=remaining_time(router)
        )

    def answer(run: ChatRun | CompletionRun) -> Response[Any]:
        headers = {MODEL_VERSION_HEADER: str(run.run.served.version)}
        if run.stream:
            return answers.sse(openai_events(run.chunks()), openai_error_event, headers)
        body = run.response().model_dump_json()
        check_response_size(len(body), settings.max_response_bytes)
        return json_response(body, headers=headers)

    @routes.add(OPENAI_CHAT_COMPLETIONS)
    def chat_completions() -> Response[Any]:
        request = decode_body(router.current_event, ChatCompletionRequest, settings)
        return answer(service.chat(request, context()))

    @routes.add(OPENAI_COMPLETIONS)
    def completions() -> Response[Any]:
        request = decode_body(router.current_event, CompletionRequest, settings)
        return answer(service.complete(request, context()))

    @routes.add(OPENAI_LIST_MODELS)
    def list_models() -> Response[Any]:
        return json_response(service.models().model_dump_json())

    @routes.add(OPENAI_MODEL)
    def retrieve_model(model: str) -> Response[Any]:
        # API Gateway hands path parameters over still percent-encoded (smollm2-135m%40production).
        return json_response(service.model(unquote(model)).model_dump_json())


def openai_events(chunks: Iterator[ChatCompletionChunk | Completion]) -> Iterator[bytes]:
    for chunk in chunks:
        yield sse_event(chunk.model_dump(mode="json"))
    yield SSE_DONE


def openai_error(status: int, message: str) -> OpenAIErrorResponse:
    field = _FIELD.match(message)
    param = field.group(1) if field and field.group(1) not in _NOT_PARAMETERS else None
    code = "model_not_found" if status == 404 and message.startswith("model ") else None
    return OpenAIErrorResponse(
        error=OpenAIError(message=message, type=error_type(status), param=param, code=code)
    )


def error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


def openai_error_event(exc: MaasError) -> bytes:
    """The last event of a stream that failed after its first byte."""
    return sse_event(openai_error(exc.status, exc.message).model_dump(mode="json"))


def in_openai_shape(event: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """An error answer to a request under /openai/, reshaped from maas's {"error": "..."} into OpenAI's."""
    path = request_path(event)
    if not (path == "/openai" or path.startswith("/openai/")):
        return response
    message = error_message(response)
    if message is None:
        return response
    status = int(response["statusCode"])
    return {**response, "body": openai_error(status, message).model_dump_json()}
