"""KServe V1 routes. API Gateway cannot route on a ':' inside a segment, so `name:predict` arrives through
the proxy route and is matched here."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response

from maas.api.http_body import header, read_body
from maas.api.route_table import V1_EXPLAIN, V1_LIST_MODELS, V1_LIVE, V1_MODEL_STATUS, V1_PREDICT
from maas.api.routing import ServedRoutes, json_response, remaining_time
from maas.api.v2_inference import MODEL_VERSION_HEADER, ROUTING_KEY_HEADER
from maas.infer_types import InferenceRequest
from maas.protocol.explain_codec import decode_explain_parameters, encode_v1_explain_response
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v1_codec import decode_predict_request, encode_predict_response
from maas.protocol.v1_types import V1ModelList, V1ModelStatus, V1ServerLive
from maas.registry.references import ModelRef, parse_ref
from maas.service.inference import InferenceService

# The literal verbs the POST rules match; a percent-encoded ':' is part of a name, as for the POST rules.
_VERBS = "|".join(route.path.rsplit(":", 1)[1] for route in (V1_PREDICT, V1_EXPLAIN))
VERB_PATHS = rf"/v1/models/[^/]*:({_VERBS})/*"


def register_v1_routes(routes: ServedRoutes, service: InferenceService) -> None:
    settings = service.settings
    limits = TensorLimits.from_settings(settings)
    router = routes.router

    # KServe V1 servers answer liveness at the root (kserve's InferenceRESTClient.is_server_live).
    @routes.add(V1_LIVE)
    def server_live() -> Response[Any]:
        return json_response(V1ServerLive(status="alive").model_dump_json())

    @routes.add(V1_LIST_MODELS)
    def list_models() -> Response[Any]:
        return json_response(V1ModelList(models=list(service.model_index())).model_dump_json())

    def decode(name: str) -> tuple[ModelRef, InferenceRequest]:
        ref = _ref(name)
        event = router.current_event
        # Pick the canary side first: V1 needs that version's signature to read the instances.
        pinned = ModelRef(ref.name, version=service.select_version(ref, header(event, ROUTING_KEY_HEADER)))
        _, signature = service.signature(pinned)
        body = read_body(event, settings.max_request_bytes, compressed=settings.compressed_bodies)
        return pinned, decode_predict_request(body, signature, limits)

    @routes.add(V1_PREDICT)
    def predict(name: str) -> Response[Any]:
        pinned, request = decode(name)
        response = service.infer(pinned, request, remaining_ms=remaining_time(router))
        return json_response(
            encode_predict_response(response), headers={MODEL_VERSION_HEADER: str(response.model_version)}
        )

    @routes.add(V1_EXPLAIN)
    def explain(name: str) -> Response[Any]:
        pinned, request = decode(name)
        parameters = decode_explain_parameters(request.parameters)
        response = service.explain(pinned, request, parameters, remaining_ms=remaining_time(router))
        return json_response(
            encode_v1_explain_response(response),
            headers={MODEL_VERSION_HEADER: str(response.model_version)},
        )

    # The <name> of this rule would also match "m:predict"; that path is the POST routes', whatever the
    # name before the verb (an empty one included), so every method gets the same 405 or 404 for it.
    @routes.add(V1_MODEL_STATUS, unless=VERB_PATHS)
    def model_status(name: str) -> Response[Any]:
        ref = _ref(name)
        service.model_ready(ref)
        return json_response(V1ModelStatus(name=ref.name, ready=True).model_dump_json())


def _ref(name: str) -> ModelRef:
    # V1 has no version path; the reference grammar (name@alias) carries one instead.
    return parse_ref(unquote(name))
