"""Open Inference Protocol V2 routes over the inference service.

Routes only translate: path and body in, service call, wire JSON out. Error mapping lives in http_app.
"""

from __future__ import annotations

from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from maas.api.v2_codec import decode_infer_request, encode_infer_response, encode_model_metadata
from maas.api.v2_types import LiveResponse, ModelReadyResponse, ReadyResponse, ServerMetadataResponse
from maas.registry.references import ModelRef, parse_version_selector
from maas.service.inference import InferenceService

MODEL = "/v2/models/<name>"
MODEL_VERSION = "/v2/models/<name>/versions/<version>"


def json_response(body: str, status: int = 200) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def build_v2_router(service: InferenceService) -> Router:
    router = Router()

    @router.get("/v2/health/live")
    def server_live() -> Response[str]:
        return json_response(LiveResponse(live=True).model_dump_json())

    @router.get("/v2/health/ready")
    def server_ready() -> Response[str]:
        return json_response(ReadyResponse(ready=service.server_ready()).model_dump_json())

    @router.get("/v2")
    def server_metadata() -> Response[str]:
        metadata = service.server_metadata()
        return json_response(
            ServerMetadataResponse(
                name=metadata.name, version=metadata.version, extensions=metadata.extensions
            ).model_dump_json()
        )

    @router.get(MODEL)
    @router.get(MODEL_VERSION)
    def model_metadata(name: str, version: str | None = None) -> Response[str]:
        return json_response(encode_model_metadata(service.model_metadata(_ref(name, version))))

    @router.get(f"{MODEL}/ready")
    @router.get(f"{MODEL_VERSION}/ready")
    def model_ready(name: str, version: str | None = None) -> Response[str]:
        ref = _ref(name, version)
        ready = service.model_ready(ref)
        resolved = service.model_metadata(ref).version
        return json_response(
            ModelReadyResponse(name=ref.name, version=str(resolved), ready=ready).model_dump_json()
        )

    @router.post(f"{MODEL}/infer")
    @router.post(f"{MODEL_VERSION}/infer")
    def infer(name: str, version: str | None = None) -> Response[str]:
        ref = _ref(name, version)
        request = decode_infer_request(router.current_event.decoded_body or "")
        return json_response(encode_infer_response(service.infer(ref, request)))

    return router


def _ref(name: str, version: str | None) -> ModelRef:
    # API Gateway hands path parameters over still percent-encoded (name%40alias).
    return parse_version_selector(unquote(name), None if version is None else unquote(version))
