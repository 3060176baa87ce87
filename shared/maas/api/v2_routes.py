"""Open Inference Protocol V2 routes over the inference service.

Routes only translate: path and body in, service call, wire JSON out. Error mapping lives in http_app.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from maas.api.v2_codec import decode_infer_request, encode_infer_response, encode_model_metadata
from maas.api.v2_types import LiveResponse, ModelReadyResponse, ReadyResponse, ServerMetadataResponse
from maas.registry.references import ModelRef, parse_version_selector
from maas.service.inference import InferenceService

Handler = TypeVar("Handler", bound=Callable[..., Any])

MODEL = "/v2/models/<name>"
MODEL_VERSION = "/v2/models/<name>/versions/<version>"


def json_response(body: str, status: int = 200) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


class RouteTable:
    """Registers handlers on a Powertools router and remembers the rules, so an unmatched request can be
    told which methods its path does accept (405) instead of a bare 404."""

    def __init__(self) -> None:
        self.router = Router()
        self.rules: list[tuple[str, str]] = []
        self._patterns: list[tuple[str, re.Pattern[str]]] = []

    def add(self, method: str, *rules: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for rule in rules:
                self.router.route(rule, method)(handler)
                self.rules.append((method, rule))
                self._patterns.append((method, re.compile(re.sub(r"<\w+>", "[^/]+", rule) + "$")))
            return handler

        return register

    def methods_for(self, path: str) -> list[str]:
        return sorted({method for method, pattern in self._patterns if pattern.match(path)})


def build_v2_routes(service: InferenceService) -> RouteTable:
    routes = RouteTable()
    router = routes.router

    @routes.add("GET", "/v2/health/live")
    def server_live() -> Response[str]:
        return json_response(LiveResponse(live=True).model_dump_json())

    @routes.add("GET", "/v2/health/ready")
    def server_ready() -> Response[str]:
        return json_response(ReadyResponse(ready=service.server_ready()).model_dump_json())

    @routes.add("GET", "/v2")
    def server_metadata() -> Response[str]:
        metadata = service.server_metadata()
        return json_response(
            ServerMetadataResponse(
                name=metadata.name, version=metadata.version, extensions=metadata.extensions
            ).model_dump_json()
        )

    @routes.add("GET", MODEL, MODEL_VERSION)
    def model_metadata(name: str, version: str | None = None) -> Response[str]:
        return json_response(encode_model_metadata(service.model_metadata(_ref(name, version))))

    @routes.add("GET", f"{MODEL}/ready", f"{MODEL_VERSION}/ready")
    def model_ready(name: str, version: str | None = None) -> Response[str]:
        ref = _ref(name, version)
        loaded_version = service.model_ready(ref)
        return json_response(
            ModelReadyResponse(name=ref.name, version=str(loaded_version), ready=True).model_dump_json()
        )

    @routes.add("POST", f"{MODEL}/infer", f"{MODEL_VERSION}/infer")
    def infer(name: str, version: str | None = None) -> Response[str]:
        ref = _ref(name, version)
        request = decode_infer_request(router.current_event.decoded_body or "")
        return json_response(encode_infer_response(service.infer(ref, request)))

    return routes


def _ref(name: str, version: str | None) -> ModelRef:
    # API Gateway hands path parameters over still percent-encoded (name%40alias).
    return parse_version_selector(unquote(name), None if version is None else unquote(version))
