"""The infer function's composition root: the V2/V1/docs HTTP app, direct invokes and the warm-up schedule,
over one inference service, behind the Lambda edge.

    POST .../infer and .../explain         -> the fast path (maas.api.fast_infer)
    any other API Gateway / URL event      -> the HTTP app (maas.api), built on first use
    {"model": ..., "inputs": [...]}        -> direct invoke (maas.events.infer_events)
    EventBridge "Scheduled Event"          -> warm-up
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.fast_infer import FastInfer
from maas.apps.edge import Edge
from maas.apps.snapstart import register_snapshot_hooks, warm_inference
from maas.config import function_settings
from maas.errors import InvalidInput
from maas.events.infer_events import InferEvents, is_direct_invoke, is_warm_up
from maas.service.inference import InferenceService

if TYPE_CHECKING:
    from maas.api.http_transport import MultiFormatApp

UNSUPPORTED_INFER_EVENT = (
    'event: expected an API Gateway or Function URL request, a direct invoke {"model", "inputs"} '
    "or an EventBridge scheduled warm-up"
)


def infer_http_app(service: InferenceService) -> MultiFormatApp:
    """The V2, V1 and docs routes over the inference service."""
    # Imported here: Powertools' resolvers and the route modules are needed only by the first request the
    # fast path does not answer, so a container that only infers never imports them.
    from maas.api.docs_routes import register_docs_routes
    from maas.api.http_transport import MultiFormatApp, register_error_handlers
    from maas.api.routing import ServedRoutes
    from maas.api.v1_routes import register_v1_routes
    from maas.api.v2_routes import register_v2_routes

    routes = ServedRoutes()
    register_v2_routes(routes, service)
    register_v1_routes(routes, service)
    register_docs_routes(routes, swagger_ui_enabled=service.settings.docs_enabled)
    register_error_handlers(routes)
    return MultiFormatApp(routes)


class InferFunction(Edge):
    """Every event the infer function gets, sent to the adapter that speaks it, behind the Lambda edge."""

    # A direct invoke's caller (a Step Functions task, a script) reads a client mistake as an answer.
    answers_client_errors = True

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.fast = FastInfer(service)
        self.events = InferEvents(service)

    @functools.cached_property
    def http(self) -> MultiFormatApp:
        """The general HTTP app (every route, Powertools' resolvers), built by the first request that
        needs it."""
        return infer_http_app(self.service)

    def answer(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        if "requestContext" in event or "httpMethod" in event:
            answered = self.fast.answer(event, context)
            return answered if answered is not None else self.http.resolve(event, context)
        if is_warm_up(event):
            return self.events.warm_up()
        if is_direct_invoke(event):
            return self.events.invoke(event, context)
        raise InvalidInput(UNSUPPORTED_INFER_EVENT)


def build_infer_app(service: InferenceService | None = None) -> InferFunction:
    function = InferFunction(service or InferenceService.from_settings(function_settings("InferMemorySize")))
    register_snapshot_hooks(warm_infer_function(function))
    return function


def warm_infer_function(function: InferFunction) -> Callable[[], dict[str, Any]]:
    """Before a snapshot: the WarmModels versions loaded, and the general HTTP app built, so no copy
    restored from the snapshot builds it on its first request."""
    warm_models = warm_inference(function.service)

    def warm_up() -> dict[str, Any]:
        function.http  # noqa: B018 - the cached property builds the app
        return warm_models()

    return warm_up
