"""Open Inference Protocol V2 routes over the inference service.

Routes only translate: path and body in, service call, wire out. The routes themselves are rows of
route_table; errors are mapped in http_transport.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

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
from maas.api.v2_inference import (
    BINARY_CONTENT_TYPE,
    EncodedAnswer,
    V2Inference,
    model_ref,
)
from maas.protocol.v2_codec import encode_model_metadata
from maas.protocol.v2_types import (
    LiveResponse,
    ModelIndexEntry,
    ModelListResponse,
    ModelReadyResponse,
    ReadyResponse,
    RepositoryIndexEntry,
    ServerMetadataResponse,
)
from maas.service.inference import InferenceService


def register_v2_routes(routes: ServedRoutes, service: InferenceService) -> None:
    inference = V2Inference(service)
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
        return json_response(encode_model_metadata(service.model_metadata(model_ref(name, version))))

    @routes.add(*V2_MODEL_READY)
    def model_ready(name: str, version: str | None = None) -> Response[Any]:
        ref = model_ref(name, version)
        loaded_version = service.model_ready(ref)
        return json_response(
            ModelReadyResponse(name=ref.name, version=str(loaded_version), ready=True).model_dump_json()
        )

    @routes.add(*V2_INFER)
    def infer(name: str, version: str | None = None) -> Response[Any]:
        return _response(inference.infer(router.current_event, name, version, remaining_time(router)))

    @routes.add(*V2_EXPLAIN)
    def explain(name: str, version: str | None = None) -> Response[Any]:
        return _response(inference.explain(router.current_event, name, version, remaining_time(router)))


def _response(answer: EncodedAnswer) -> Response[Any]:
    if answer.binary:
        return Response(
            status_code=200, content_type=BINARY_CONTENT_TYPE, body=answer.content, headers=answer.headers
        )
    return json_response(answer.content, headers=answer.headers)


def _json_list(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"))
