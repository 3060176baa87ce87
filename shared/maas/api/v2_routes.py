"""Open Inference Protocol V2 routes over the inference service.

Routes only translate: path and body in, service call, wire out. The routes themselves are rows of
route_table; errors are mapped in http_transport.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from maas.api.http_body import header, header_length, read_body
from maas.api.route_table import (
    V2_EXPLAIN,
    V2_INFER,
    V2_LIST_MODELS,
    V2_LIVE,
    V2_MODEL_METADATA,
    V2_MODEL_READY,
    V2_READY,
    V2_REPOSITORY_INDEX,
    V2_SERVER_METADATA,
)
from maas.api.routing import ServedRoutes, json_response, remaining_time
from maas.errors import InvalidInput, PayloadTooLarge
from maas.infer_types import InferenceResponse
from maas.protocol.explain_codec import decode_explain_parameters
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import (
    HEADER_LENGTH,
    DecodedInferRequest,
    decode_infer_request,
    encode_infer_response,
    encode_model_metadata,
)
from maas.protocol.v2_types import (
    LiveResponse,
    ModelIndexEntry,
    ModelListResponse,
    ModelReadyResponse,
    ReadyResponse,
    RepositoryIndexEntry,
    ServerMetadataResponse,
)
from maas.registry.references import ModelRef, describe_name, parse_ref, parse_version_selector
from maas.service.inference import ROUTING_KEY, InferenceService

MODEL_VERSION_HEADER = "x-maas-model-version"
ROUTING_KEY_HEADER = "x-maas-routing-key"
BINARY_CONTENT_TYPE = "application/octet-stream"
# Lambda returns binary bodies base64-encoded, which grows them by a third.
BASE64_GROWTH = 4 / 3


def register_v2_routes(routes: ServedRoutes, service: InferenceService) -> None:
    settings = service.settings
    limits = TensorLimits.from_settings(settings)
    router = routes.router

    @routes.add(V2_LIVE)
    def server_live() -> Response[Any]:
        return json_response(LiveResponse(live=True).model_dump_json())

    @routes.add(V2_READY)
    def server_ready() -> Response[Any]:
        return json_response(ReadyResponse(ready=service.server_ready()).model_dump_json())

    @routes.add(V2_SERVER_METADATA)
    def server_metadata() -> Response[Any]:
        metadata = service.server_metadata()
        return json_response(
            ServerMetadataResponse(
                name=metadata.name, version=metadata.version, extensions=metadata.extensions
            ).model_dump_json()
        )

    @routes.add(V2_LIST_MODELS)
    def list_models() -> Response[Any]:
        models = [
            ModelIndexEntry(name=name, versions=[str(v) for v in versions])
            for name, versions in service.model_index().items()
        ]
        return json_response(ModelListResponse(models=models).model_dump_json())

    @routes.add(V2_REPOSITORY_INDEX)
    def repository_index() -> Response[Any]:
        loaded = set(service.cache.loaded_keys())
        rows = [
            RepositoryIndexEntry(
                name=name, version=str(version), state="READY" if (name, version) in loaded else "UNAVAILABLE"
            ).model_dump()
            for name, versions in service.model_index().items()
            for version in versions
        ]
        return json_response(_json_list(rows))

    @routes.add(*V2_MODEL_METADATA)
    def model_metadata(name: str, version: str | None = None) -> Response[Any]:
        return json_response(encode_model_metadata(service.model_metadata(_ref(name, version))))

    @routes.add(*V2_MODEL_READY)
    def model_ready(name: str, version: str | None = None) -> Response[Any]:
        ref = _ref(name, version)
        loaded_version = service.model_ready(ref)
        return json_response(
            ModelReadyResponse(name=ref.name, version=str(loaded_version), ready=True).model_dump_json()
        )

    def decode() -> DecodedInferRequest:
        event = router.current_event
        body = read_body(event, settings.max_request_bytes, compressed=settings.compressed_bodies)
        decoded = decode_infer_request(body, limits, header_length=header_length(event, HEADER_LENGTH))
        routing_key = header(event, ROUTING_KEY_HEADER)
        if routing_key is None:
            return decoded
        request = decoded.request
        return dataclasses.replace(
            decoded,
            request=dataclasses.replace(request, parameters={**request.parameters, ROUTING_KEY: routing_key}),
        )

    @routes.add(*V2_INFER)
    def infer(name: str, version: str | None = None) -> Response[Any]:
        decoded = decode()
        ref = _ref(name, version)
        _check_body_names(decoded, ref, name, version)
        response = service.infer(ref, decoded.request, remaining_ms=remaining_time(router))
        return _inference_response(response, decoded, settings.max_response_bytes)

    @routes.add(*V2_EXPLAIN)
    def explain(name: str, version: str | None = None) -> Response[Any]:
        decoded = decode()
        ref = _ref(name, version)
        _check_body_names(decoded, ref, name, version)
        parameters = decode_explain_parameters(decoded.request.parameters)
        response = service.explain(ref, decoded.request, parameters, remaining_ms=remaining_time(router))
        return _inference_response(response, decoded, settings.max_response_bytes)


def _inference_response(
    response: InferenceResponse, decoded: DecodedInferRequest, max_response_bytes: int
) -> Response[Any]:
    encoded = encode_infer_response(response, decoded)
    headers = {MODEL_VERSION_HEADER: str(response.model_version)}
    if encoded.header_length is None:
        _check_response_size(len(encoded.content), max_response_bytes)
        return json_response(encoded.content, headers=headers)
    _check_response_size(int(len(encoded.content) * BASE64_GROWTH), max_response_bytes)
    headers[HEADER_LENGTH] = str(encoded.header_length)
    return Response(status_code=200, content_type=BINARY_CONTENT_TYPE, body=encoded.content, headers=headers)


def _ref(name: str, version: str | None) -> ModelRef:
    # API Gateway hands path parameters over still percent-encoded (name%40alias). Without a
    # /versions/ segment the name may carry an alias itself, as everywhere else: seed-mlp@staging.
    if version is None:
        return parse_ref(unquote(name))
    return parse_version_selector(unquote(name), unquote(version))


def _check_body_names(decoded: DecodedInferRequest, ref: ModelRef, name: str, version: str | None) -> None:
    """A body may name the model as well (KServe's SDK sends model_name): the path decides, so a body
    that names another model or version is refused rather than silently overruled."""
    path_name = unquote(name)
    if decoded.model_name is not None and decoded.model_name not in (ref.name, path_name):
        expected = repr(ref.name) if path_name == ref.name else f"{ref.name!r} or {path_name!r}"
        raise InvalidInput(
            f"model_name: expected {expected} (the model the path names) or no model_name, "
            f"got {describe_name(decoded.model_name)}"
        )
    if decoded.model_version is None:
        return
    if version is None:
        raise InvalidInput(
            "model_version: expected none, as the path names no version (pin one with "
            f"/v2/models/{ref.name}/versions/{{version}}/...), got {describe_name(decoded.model_version)}"
        )
    path_version = unquote(version)
    if decoded.model_version != path_version:
        raise InvalidInput(
            f"model_version: expected {path_version!r} (the path's version) or no model_version, "
            f"got {describe_name(decoded.model_version)}"
        )


def _check_response_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"response: expected at most {limit} bytes (MAAS_MAX_RESPONSE_BYTES, Lambda's payload limit), "
            f"got {size}; send fewer rows, request a subset of outputs, or use the async or batch path"
        )


def _json_list(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"))
