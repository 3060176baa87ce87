"""Triton's generate extension over the completion service: POST /v2/models/{name}/generate (and its twin
pinned to /versions/{version}) answers one JSON object, .../generate_stream one Server-Sent Event per decoded
piece.

Errors keep maas's V2 shape, {"error": "..."}, as Triton's do; a stream that fails after its first byte ends
with one such event.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from maas.api.generation_http import (
    MODEL_VERSION_HEADER,
    ROUTING_KEY_HEADER,
    StreamedAnswers,
    check_response_size,
    decode_body,
)
from maas.api.http_body import header
from maas.api.http_stream import sse_event
from maas.api.route_table import V2_GENERATE, V2_GENERATE_STREAM
from maas.api.routing import ServedRoutes, json_response, remaining_time
from maas.errors import MaasError
from maas.protocol.generate_types import GenerateRequest
from maas.registry.references import ModelRef, parse_ref, parse_version_selector
from maas.service.completions import CompletionService, RequestContext
from maas.service.completions_triton import GenerateRun


def register_generate_routes(
    routes: ServedRoutes, service: CompletionService, answers: StreamedAnswers
) -> None:
    settings = service.settings
    router = routes.router

    def run(name: str, version: str | None, *, stream: bool) -> GenerateRun:
        request = decode_body(router.current_event, GenerateRequest, settings)
        context = RequestContext(
            routing_key=header(router.current_event, ROUTING_KEY_HEADER), remaining_ms=remaining_time(router)
        )
        return service.generate(model_ref(name, version), request, stream=stream, context=context)

    @routes.add(*V2_GENERATE)
    def generate(name: str, version: str | None = None) -> Response[Any]:
        answer = run(name, version, stream=False)
        body = answer.response().model_dump_json(exclude_none=True)
        check_response_size(len(body), settings.max_response_bytes)
        return json_response(body, headers={MODEL_VERSION_HEADER: str(answer.run.served.version)})

    @routes.add(*V2_GENERATE_STREAM)
    def generate_stream(name: str, version: str | None = None) -> Response[Any]:
        answer = run(name, version, stream=True)
        events = (sse_event(chunk.model_dump(mode="json", exclude_none=True)) for chunk in answer.chunks())
        headers = {MODEL_VERSION_HEADER: str(answer.run.served.version)}
        return answers.sse(events, triton_error_event, headers)


def model_ref(name: str, version: str | None) -> ModelRef:
    # API Gateway hands path parameters over still percent-encoded (name%40alias).
    if version is None:
        return parse_ref(unquote(name))
    return parse_version_selector(unquote(name), unquote(version))


def triton_error_event(exc: MaasError) -> bytes:
    return sse_event({"error": exc.message})
