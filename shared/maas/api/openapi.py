"""The OpenAPI 3.1 document, generated from the route table (maas.api.route_table) and the wire models it
names."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from maas import __version__
from maas.api.route_table import GENERATE, GET, INFER, OPENAI_PREFIX, ROUTES, Route
from maas.protocol import request_examples
from maas.protocol.openai_types import OpenAIErrorResponse
from maas.protocol.v2_types import ErrorResponse

REF_TEMPLATE = "#/components/schemas/{model}"
_ERROR_DESCRIPTIONS = {
    400: "The request is malformed or does not fit the model's signature.",
    404: "No such model, version, alias or route.",
    405: "The path exists for another method.",
    413: "The body, batch, element count or a string element is over its limit.",
    415: "The Content-Type or Content-Encoding is not one maas decodes (or compressed bodies are off).",
    503: (
        "Model storage or the execution provider is unavailable, or the model does not fit the function's "
        "memory (the message names the memory parameter to raise)."
    ),
    504: "The inference ran past its time budget (MAAS_REQUEST_TIMEOUT) and was cut off.",
    507: (
        "The model's files do not fit the function's temp space (/tmp); the message says how much is needed, "
        "how much is free, and to raise EphemeralStorageSize."
    ),
}

# The data plane, served by the infer and generate functions: the registry's routes are IAM-only
# administration, and the document's own routes are not operations of the API it describes.
OPERATIONS: tuple[Route, ...] = tuple(
    route for route in ROUTES if route.function in (INFER, GENERATE) and route.tag
)
SSE_MEDIA_TYPE = "text/event-stream"
_PATH_PARAMETERS = {
    "name": ("Model name", "^[a-z0-9][a-z0-9._-]{0,63}$"),
    "version": ("Version number or alias", "^[a-z0-9][a-z0-9._-]{0,63}$"),
    "model": (
        "A model reference: name, name@alias, name:version, name:alias or name/versions/<n>",
        "^[a-z0-9][a-z0-9._-]{0,63}([@:][a-z0-9][a-z0-9._-]{0,63})?$",
    ),
}
# What Swagger UI fills in: the model whose request examples the wire types carry.
_PATH_EXAMPLES = {"name": request_examples.EXAMPLE_MODEL, "version": request_examples.EXAMPLE_VERSION}


def wire_type(name: str) -> type[BaseModel]:
    """The pydantic model a route table row names, such as maas.protocol.v2_types.LiveResponse."""
    module, _, attribute = name.rpartition(".")
    model = getattr(importlib.import_module(module), attribute)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{name}: expected a pydantic model, got {model!r}")
    return model


def openapi_document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse, OpenAIErrorResponse}
    for op in OPERATIONS:
        named = (op.request, op.response, op.event_stream)
        models.update(wire_type(name) for name in named if name is not None)
    _, definitions = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF_TEMPLATE,
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
        if op.method == GET:
            paths[op.path]["head"] = _head_operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "maas inference API",
            "version": __version__,
            "description": (
                "Open Inference Protocol V2 (with Triton's binary tensor and generate extensions), "
                "KServe V1, and OpenAI-compatible text generation under /openai/v1."
            ),
        },
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {})},
    }


def _operation(op: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": op.operation_id,
        "responses": {"200": _ok(op), **{str(status): _error(op, status) for status in op.errors}},
    }
    # Only the infer function's routes speak to seed-mlp; a generator's name differs per deployment.
    path_examples = _PATH_EXAMPLES if op.function == INFER else {}
    in_path = [name for name in _PATH_PARAMETERS if f"{{{name}}}" in op.path]
    parameters = [_path_parameter(name, path_examples.get(name)) for name in in_path]
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
        request = wire_type(op.request)
        body: dict[str, Any] = {"schema": _ref(request)}
        extra = request.model_config.get("json_schema_extra")
        examples = extra.get("examples") if isinstance(extra, dict) else None
        if isinstance(examples, list) and examples:
            # Swagger UI's "Try it out" starts from the media type's example; the schema keeps them all.
            body["example"] = examples[0]
        content: dict[str, Any] = {"application/json": body}
        if op.binary:
            content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def _head_operation(op: Route) -> dict[str, Any]:
    """Every GET answers HEAD too: the same status and headers, no body."""
    get = _operation(op)
    return {
        **get,
        "summary": f"{op.summary}: status and headers only",
        "operationId": op.operation_id.replace("get_", "head_", 1),
        "responses": {status: {"description": r["description"]} for status, r in get["responses"].items()},
    }


def _ok(op: Route) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.response is not None:
        response = _ref(wire_type(op.response))
        schema = {"type": "array", "items": response} if op.response_is_list else response
        content["application/json"] = {"schema": schema}
    if op.binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    if op.event_stream is not None:
        # OpenAPI 3.1 cannot type an event stream's events; the schema says what each data: line holds.
        event = op.event_stream.rpartition(".")[2]
        content[SSE_MEDIA_TYPE] = {
            "schema": {"type": "string", "description": f"Server-Sent Events, each `data:` line a {event}"}
        }
    return {"description": "OK", "content": content} if content else {"description": "OK"}


def _error(op: Route, status: int) -> dict[str, Any]:
    shape = OpenAIErrorResponse if op.path.startswith(OPENAI_PREFIX) else ErrorResponse
    return {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ref(shape)}},
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _path_parameter(name: str, example: str | None) -> dict[str, Any]:
    description, pattern = _PATH_PARAMETERS[name]
    parameter: dict[str, Any] = {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }
    if example is not None:
        parameter["example"] = example
    return parameter
