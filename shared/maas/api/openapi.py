"""The OpenAPI 3.1 document, generated from the wire models and the table of operations below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from maas import __version__
from maas.protocol.v1_types import (
    ExplainRequest,
    PredictRequest,
    PredictResponse,
    V1ExplainResponse,
    V1ModelList,
    V1ModelStatus,
    V1ServerLive,
)
from maas.protocol.v2_types import (
    ErrorResponse,
    ExplainRequestBody,
    HttpInferenceRequestBody,
    InferenceResponseBody,
    LiveResponse,
    ModelListResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ReadyResponse,
    RepositoryIndexEntry,
    ServerMetadataResponse,
)

REF_TEMPLATE = "#/components/schemas/{model}"
_ERROR_DESCRIPTIONS = {
    400: "The request is malformed or does not fit the model's signature.",
    404: "No such model, version, alias or route.",
    405: "The path exists for another method.",
    413: "The body, batch, element count or a string element is over its limit.",
    415: "The Content-Type or Content-Encoding is not one maas decodes (or compressed bodies are off).",
    503: "Model storage or the execution provider is unavailable.",
    504: "The inference ran past its time budget (MAAS_REQUEST_TIMEOUT) and was cut off.",
}
_MODEL_ERRORS = (400, 404, 503)
_INFER_ERRORS = (400, 404, 413, 415, 503, 504)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    response: type[BaseModel] | None
    request: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    binary: bool = False
    response_is_list: bool = False


V2_MODEL = "/v2/models/{name}"
V2_VERSION = "/v2/models/{name}/versions/{version}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/v2", "Server metadata", "V2 server", ServerMetadataResponse),
    Operation("get", "/v2/health/live", "Server liveness", "V2 server", LiveResponse),
    Operation("get", "/v2/health/ready", "Server readiness", "V2 server", ReadyResponse, errors=(503,)),
    Operation(
        "get", "/v2/models", "List models and their versions", "V2 models", ModelListResponse, errors=(503,)
    ),
    Operation(
        "post",
        "/v2/repository/index",
        "Triton repository index",
        "V2 models",
        RepositoryIndexEntry,
        errors=(503,),
        response_is_list=True,
    ),
    *(
        op
        for base in (V2_MODEL, V2_VERSION)
        for op in (
            Operation(
                "get", base, "Model metadata", "V2 models", ModelMetadataResponse, errors=_MODEL_ERRORS
            ),
            Operation(
                "get",
                f"{base}/ready",
                "Model readiness (loads it)",
                "V2 models",
                ModelReadyResponse,
                errors=_MODEL_ERRORS,
            ),
            Operation(
                "post",
                f"{base}/infer",
                "Inference",
                "V2 inference",
                InferenceResponseBody,
                request=HttpInferenceRequestBody,
                errors=_INFER_ERRORS,
                binary=True,
            ),
            Operation(
                "post",
                f"{base}/explain",
                "Explanation: predictions with per-input attributions (maas's explain extension)",
                "V2 inference",
                InferenceResponseBody,
                request=ExplainRequestBody,
                errors=_INFER_ERRORS,
                binary=True,
            ),
        )
    ),
    Operation("get", "/", "Server liveness (KServe V1)", "V1", V1ServerLive),
    Operation("get", "/v1/models", "List models (KServe V1)", "V1", V1ModelList, errors=(503,)),
    Operation(
        "get", "/v1/models/{name}", "Model status (KServe V1)", "V1", V1ModelStatus, errors=_MODEL_ERRORS
    ),
    Operation(
        "post",
        "/v1/models/{name}:predict",
        "Predict (KServe V1)",
        "V1",
        PredictResponse,
        request=PredictRequest,
        errors=_INFER_ERRORS,
    ),
    Operation(
        "post",
        "/v1/models/{name}:explain",
        "Explain (KServe V1): predictions with per-instance attributions",
        "V1",
        V1ExplainResponse,
        request=ExplainRequest,
        errors=_INFER_ERRORS,
    ),
)


def openapi_document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse}
    for op in OPERATIONS:
        models.update(m for m in (op.request, op.response) if m is not None)
    _, definitions = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF_TEMPLATE,
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
        if op.method == "get":
            paths[op.path]["head"] = _head_operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "maas inference API",
            "version": __version__,
            "description": (
                "Open Inference Protocol V2 (with Triton's binary tensor extension) and KServe V1."
            ),
        },
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {})},
    }


def _operation(op: Operation) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": _operation_id(op),
        "responses": {"200": _ok(op), **{str(status): _error(status) for status in op.errors}},
    }
    parameters = [_path_parameter(name) for name in ("name", "version") if f"{{{name}}}" in op.path]
    if op.binary:
        parameters.append(
            {
                "name": "Inference-Header-Content-Length",
                "in": "header",
                "required": False,
                "description": "Length of the JSON header when binary tensor data follows it.",
                "schema": {"type": "integer", "minimum": 0},
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if op.request is not None:
        content: dict[str, Any] = {"application/json": {"schema": _ref(op.request)}}
        if op.binary:
            content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def _head_operation(op: Operation) -> dict[str, Any]:
    """Every GET answers HEAD too: the same status and headers, no body."""
    get = _operation(op)
    return {
        **get,
        "summary": f"{op.summary}: status and headers only",
        "operationId": _operation_id(op).replace("get_", "head_", 1),
        "responses": {status: {"description": r["description"]} for status, r in get["responses"].items()},
    }


def _ok(op: Operation) -> dict[str, Any]:
    if op.response is None:
        return {"description": "OK"}
    schema = {"type": "array", "items": _ref(op.response)} if op.response_is_list else _ref(op.response)
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if op.binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"description": "OK", "content": content}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ref(ErrorResponse)}},
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _path_parameter(name: str) -> dict[str, Any]:
    description = "Model name" if name == "name" else "Version number or alias"
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
    }


def _operation_id(op: Operation) -> str:
    cleaned = op.path.strip("/").replace("{", "").replace("}", "").replace(":", "_").replace("/", "_")
    return f"{op.method}_{cleaned or 'root'}"
