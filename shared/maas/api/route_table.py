"""The one table of HTTP routes: every route maas serves, which function serves it and what it speaks.

The route modules register their handlers for these rows (`ServedRoutes.add`), the OpenAPI document is
generated from them (`maas.api.openapi`), and tests/infra checks template.yaml's HttpApi events against them.
template.yaml stays hand-written because SAM reads it, but it can no longer drift unnoticed.

Paths are written as API Gateway and OpenAPI write them (`{name}`); every GET also answers HEAD. Wire types
are named, not imported, so a function's cold start pays only for the types its own routes speak.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from http import HTTPMethod
from typing import Literal

Function = Literal["infer", "registry", "generate"]
INFER: Function = "infer"
REGISTRY: Function = "registry"
# Text generation: the OpenAI-compatible routes and Triton's generate extension (issue 18).
GENERATE: Function = "generate"

# Short names for the rows below.
GET, HEAD, POST = HTTPMethod.GET, HTTPMethod.HEAD, HTTPMethod.POST
PUT, DELETE = HTTPMethod.PUT, HTTPMethod.DELETE
_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    function: Function
    method: HTTPMethod
    path: str
    summary: str
    # The OpenAPI tag; None for the routes that serve the document itself, which it does not describe.
    tag: str | None
    # Dotted names of the pydantic wire models of the body and of a 200 answer.
    response: str | None = None
    request: str | None = None
    errors: tuple[int, ...] = ()
    # Also speaks Triton's binary tensor extension (application/octet-stream).
    binary: bool = False
    response_is_list: bool = False
    # The API Gateway route that carries this one when HTTP API cannot route its path itself.
    gateway_route: str | None = None
    # Dotted name of the wire model of each Server-Sent Event when the 200 answer can be an event stream
    # (text/event-stream); with no `response`, it always is.
    event_stream: str | None = None

    @property
    def methods(self) -> tuple[HTTPMethod, ...]:
        """The methods served: GET's HEAD twin answers the same status and headers without the body."""
        return (GET, HEAD) if self.method == GET else (self.method,)

    @property
    def rule(self) -> str:
        """The path as a Powertools rule: /v2/models/<name>."""
        return _PARAMETER.sub(r"<\1>", self.path)

    @property
    def operation_id(self) -> str:
        cleaned = self.path.strip("/").replace("{", "").replace("}", "").replace(":", "_").replace("/", "_")
        return f"{self.method.lower()}_{cleaned or 'root'}"

    @property
    def gateway_route_keys(self) -> tuple[str, ...]:
        """The route keys template.yaml must declare for this route, HEAD twins included."""
        if self.gateway_route is not None:
            return (self.gateway_route,)
        return tuple(f"{method} {self.path}" for method in self.methods)


_MODEL_ERRORS = (400, 404, 503, 507)
_INFER_ERRORS = (400, 404, 413, 415, 503, 504, 507)
_V2 = "maas.protocol.v2_types"
_V1 = "maas.protocol.v1_types"
_REGISTRY = "maas.protocol.registry_types"
_DOCUMENTS = "maas.registry.documents"
_OPENAI = "maas.protocol.openai_types"
_GENERATE = "maas.protocol.generate_types"
_GENERATION_ERRORS = (400, 404, 413, 415, 503, 507)
OPENAI_PREFIX = "/openai/v1"
# Any other path under the prefix reaches the generate function too, which answers 404 or 405 for it in
# OpenAI's error shape (the $default route would carry it to the infer function, which answers in its own).
OPENAI_CATCH_ALL_ROUTE = f"ANY {OPENAI_PREFIX}/{{proxy+}}"
# API Gateway cannot route on a ':' inside a segment: V1's name:predict arrives through the proxy route.
V1_PROXY_ROUTE = "ANY /v1/models/{proxy+}"
V2_MODEL = "/v2/models/{name}"


def _with_version_twin(route: Route) -> tuple[Route, Route]:
    """A V2 model route and its twin pinned to a version (/v2/models/{name}/versions/{version}/...), which
    one handler serves."""
    pinned = route.path.replace(V2_MODEL, f"{V2_MODEL}/versions/{{version}}", 1)
    return route, dataclasses.replace(route, path=pinned)


V2_SERVER_METADATA = Route(INFER, GET, "/v2", "Server metadata", "V2 server", f"{_V2}.ServerMetadataResponse")
V2_LIVE = Route(INFER, GET, "/v2/health/live", "Server liveness", "V2 server", f"{_V2}.LiveResponse")
V2_READY = Route(
    INFER, GET, "/v2/health/ready", "Server readiness", "V2 server", f"{_V2}.ReadyResponse", errors=(503,)
)
V2_LIST_MODELS = Route(
    INFER,
    GET,
    "/v2/models",
    "List models and their versions",
    "V2 models",
    f"{_V2}.ModelListResponse",
    errors=(503,),
)
V2_REPOSITORY_INDEX = Route(
    INFER,
    POST,
    "/v2/repository/index",
    "Triton repository index",
    "V2 models",
    f"{_V2}.RepositoryIndexEntry",
    errors=(503,),
    response_is_list=True,
)
V2_MODEL_METADATA = _with_version_twin(
    Route(
        INFER,
        GET,
        V2_MODEL,
        "Model metadata",
        "V2 models",
        f"{_V2}.ModelMetadataResponse",
        errors=_MODEL_ERRORS,
    )
)
V2_MODEL_READY = _with_version_twin(
    Route(
        INFER,
        GET,
        f"{V2_MODEL}/ready",
        "Model readiness (loads it)",
        "V2 models",
        f"{_V2}.ModelReadyResponse",
        errors=_MODEL_ERRORS,
    )
)
V2_INFER = _with_version_twin(
    Route(
        INFER,
        POST,
        f"{V2_MODEL}/infer",
        "Inference",
        "V2 inference",
        f"{_V2}.InferenceResponseBody",
        request=f"{_V2}.HttpInferenceRequestBody",
        errors=_INFER_ERRORS,
        binary=True,
    )
)
V2_EXPLAIN = _with_version_twin(
    Route(
        INFER,
        POST,
        f"{V2_MODEL}/explain",
        "Explanation: predictions with per-input attributions (maas's explain extension)",
        "V2 inference",
        f"{_V2}.InferenceResponseBody",
        request=f"{_V2}.ExplainRequestBody",
        errors=_INFER_ERRORS,
        binary=True,
    )
)
V1_LIST_MODELS = Route(
    INFER, GET, "/v1/models", "List models (KServe V1)", "V1", f"{_V1}.V1ModelList", errors=(503,)
)
# KServe V1 servers answer liveness at the root (kserve's InferenceRESTClient.is_server_live).
V1_LIVE = Route(INFER, GET, "/", "Server liveness (KServe V1)", "V1", f"{_V1}.V1ServerLive")
V1_MODEL_STATUS = Route(
    INFER,
    GET,
    "/v1/models/{name}",
    "Model status (KServe V1)",
    "V1",
    f"{_V1}.V1ModelStatus",
    errors=_MODEL_ERRORS,
    gateway_route=V1_PROXY_ROUTE,
)
V1_PREDICT = Route(
    INFER,
    POST,
    "/v1/models/{name}:predict",
    "Predict (KServe V1)",
    "V1",
    f"{_V1}.PredictResponse",
    request=f"{_V1}.PredictRequest",
    errors=_INFER_ERRORS,
    gateway_route=V1_PROXY_ROUTE,
)
V1_EXPLAIN = Route(
    INFER,
    POST,
    "/v1/models/{name}:explain",
    "Explain (KServe V1): predictions with per-instance attributions",
    "V1",
    f"{_V1}.V1ExplainResponse",
    request=f"{_V1}.ExplainRequest",
    errors=_INFER_ERRORS,
    gateway_route=V1_PROXY_ROUTE,
)
OPENAPI_DOCUMENT = Route(INFER, GET, "/openapi.json", "The OpenAPI document", None)
SWAGGER_UI = Route(INFER, GET, "/docs", "Swagger UI over the OpenAPI document (off with MAAS_DOCS=0)", None)

REGISTRY_LIST_MODELS = Route(
    REGISTRY,
    GET,
    "/registry/models",
    "List models with their versions and aliases",
    "Registry",
    f"{_REGISTRY}.RegistryModelList",
)
REGISTRY_MODEL = Route(
    REGISTRY,
    GET,
    "/registry/models/{name}",
    "A model's versions and aliases",
    "Registry",
    f"{_REGISTRY}.ModelDetail",
)
REGISTRY_VERSION = Route(
    REGISTRY,
    GET,
    "/registry/models/{name}/versions/{version}",
    "A version's manifest and metadata",
    "Registry",
    f"{_REGISTRY}.VersionDetail",
)
REGISTRY_VERSION_FILE = Route(
    REGISTRY,
    GET,
    "/registry/models/{name}/versions/{version}/files/{file}",
    "One of a version's report files (card.md, its PNG plots), as stored and checked against the manifest",
    "Registry",
)
REGISTRY_DIFF = Route(
    REGISTRY,
    GET,
    "/registry/models/{name}/diff",
    "Two versions' differences (?a=A&b=B), as `maas models diff` computes them",
    "Registry",
    f"{_REGISTRY}.ModelDiff",
)
REGISTRY_GATE = Route(
    REGISTRY,
    GET,
    "/registry/models/{name}/gate",
    "The promotion gate's verdict on a version (?version=N&alias=A), without moving anything",
    "Registry",
    f"{_REGISTRY}.GateVerdict",
)
REGISTRY_SET_ALIAS = Route(
    REGISTRY,
    PUT,
    "/registry/models/{name}/aliases/{alias}",
    "Point an alias at a version, optionally with a canary",
    "Registry",
    f"{_DOCUMENTS}.AliasDocument",
    request=f"{_REGISTRY}.SetAliasRequest",
)
REGISTRY_DELETE_ALIAS = Route(
    REGISTRY,
    DELETE,
    "/registry/models/{name}/aliases/{alias}",
    "Delete an alias",
    "Registry",
    f"{_REGISTRY}.AliasDeleted",
)
REGISTRY_ROLLBACK = Route(
    REGISTRY,
    POST,
    "/registry/models/{name}/aliases/{alias}/rollback",
    "Point an alias back at its previous version",
    "Registry",
    f"{_DOCUMENTS}.AliasDocument",
    request=f"{_REGISTRY}.RollbackRequest",
)
REGISTRY_PROMOTE = Route(
    REGISTRY,
    POST,
    "/registry/models/{name}/promote",
    "Promote a version to an alias, refusing a metric regression unless forced",
    "Registry",
    f"{_DOCUMENTS}.AliasDocument",
    request=f"{_REGISTRY}.PromoteRequest",
)
REGISTRY_TAGS = Route(
    REGISTRY,
    PUT,
    "/registry/models/{name}/versions/{version}/tags",
    "Set or remove a version's tags",
    "Registry",
    f"{_DOCUMENTS}.VersionMeta",
    request=f"{_REGISTRY}.TagsRequest",
)
REGISTRY_ARCHIVE = Route(
    REGISTRY,
    POST,
    "/registry/models/{name}/versions/{version}/archive",
    "Archive a version no alias points at",
    "Registry",
    f"{_DOCUMENTS}.VersionMeta",
)

# Text generation (issue 18). The OpenAI-compatible routes live under KServe's /openai prefix, since
# /v1/models is KServe V1's already; Triton's generate extension sits beside V2's infer.
OPENAI_CHAT_COMPLETIONS = Route(
    GENERATE,
    POST,
    f"{OPENAI_PREFIX}/chat/completions",
    "Chat completion (OpenAI-compatible); with stream true, Server-Sent Events ending in data: [DONE]",
    "OpenAI-compatible",
    f"{_OPENAI}.ChatCompletion",
    request=f"{_OPENAI}.ChatCompletionRequest",
    errors=_GENERATION_ERRORS,
    event_stream=f"{_OPENAI}.ChatCompletionChunk",
)
OPENAI_COMPLETIONS = Route(
    GENERATE,
    POST,
    f"{OPENAI_PREFIX}/completions",
    "Text completion (OpenAI-compatible); with stream true, Server-Sent Events ending in data: [DONE]",
    "OpenAI-compatible",
    f"{_OPENAI}.Completion",
    request=f"{_OPENAI}.CompletionRequest",
    errors=_GENERATION_ERRORS,
    event_stream=f"{_OPENAI}.Completion",
)
OPENAI_LIST_MODELS = Route(
    GENERATE,
    GET,
    f"{OPENAI_PREFIX}/models",
    "List the text-generation models (OpenAI-compatible)",
    "OpenAI-compatible",
    f"{_OPENAI}.ModelList",
    errors=(503,),
)
OPENAI_MODEL = Route(
    GENERATE,
    GET,
    f"{OPENAI_PREFIX}/models/{{model}}",
    "A text-generation model by any reference: name, name@alias, name:version (OpenAI-compatible)",
    "OpenAI-compatible",
    f"{_OPENAI}.ModelObject",
    errors=(400, 404, 503),
)
V2_GENERATE = _with_version_twin(
    Route(
        GENERATE,
        POST,
        f"{V2_MODEL}/generate",
        "Text generation (Triton's generate extension)",
        "V2 generate",
        f"{_GENERATE}.GenerateResponse",
        request=f"{_GENERATE}.GenerateRequest",
        errors=_GENERATION_ERRORS,
    )
)
V2_GENERATE_STREAM = _with_version_twin(
    Route(
        GENERATE,
        POST,
        f"{V2_MODEL}/generate_stream",
        "Text generation as Server-Sent Events, one per decoded piece (Triton's generate extension)",
        "V2 generate",
        request=f"{_GENERATE}.GenerateRequest",
        errors=_GENERATION_ERRORS,
        event_stream=f"{_GENERATE}.GenerateResponse",
    )
)

_V2_MODEL_ROUTES = (V2_MODEL_METADATA, V2_MODEL_READY, V2_INFER, V2_EXPLAIN)
# In the order the OpenAPI document lists them.
ROUTES: tuple[Route, ...] = (
    V2_SERVER_METADATA,
    V2_LIVE,
    V2_READY,
    V2_LIST_MODELS,
    V2_REPOSITORY_INDEX,
    # The model's routes, then their twins pinned to a version.
    *(twins[pinned] for pinned in (0, 1) for twins in _V2_MODEL_ROUTES),
    V1_LIVE,
    V1_LIST_MODELS,
    V1_MODEL_STATUS,
    V1_PREDICT,
    V1_EXPLAIN,
    OPENAPI_DOCUMENT,
    SWAGGER_UI,
    REGISTRY_LIST_MODELS,
    REGISTRY_MODEL,
    REGISTRY_VERSION,
    REGISTRY_VERSION_FILE,
    REGISTRY_DIFF,
    REGISTRY_GATE,
    REGISTRY_SET_ALIAS,
    REGISTRY_DELETE_ALIAS,
    REGISTRY_ROLLBACK,
    REGISTRY_PROMOTE,
    REGISTRY_TAGS,
    REGISTRY_ARCHIVE,
    OPENAI_CHAT_COMPLETIONS,
    OPENAI_COMPLETIONS,
    OPENAI_LIST_MODELS,
    OPENAI_MODEL,
    *(twins[pinned] for pinned in (0, 1) for twins in (V2_GENERATE, V2_GENERATE_STREAM)),
)


def routes_of(function: Function) -> tuple[Route, ...]:
    return tuple(route for route in ROUTES if route.function == function)
