"""The HTTP transport shared by every HTTP function: the routes one app serves, answered to REST API v1,
HTTP API v2 and Function URL events, with errors mapped to statuses once.

MaasError carries its own status; anything else is a 500 whose details go to the log, not the client. The
invocation's correlation id, error counts and metric flush are the Lambda edge's (maas.apps.edge). Nothing
here imports the inference service, so the registry function starts without onnxruntime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.http_errors import INTERNAL_ERROR_MESSAGE, error_body, log_failure, log_unexpected
from maas.api.routing import ServedRoutes, json_response
from maas.errors import MaasError, MethodNotAllowed
from maas.observability import MetricUnit, metrics

MAX_ECHOED_PATH = 200
UNSUPPORTED_HTTP_EVENT = "event: expected an API Gateway REST (v1), HTTP API (v2) or Function URL event"
INFERENCE_ROUTE_HINT = (
    "a V2 or V1 route such as POST /v2/models/{name}/infer or POST /v1/models/{name}:predict"
)


def method_not_allowed(path: str, method: str, allowed: list[str]) -> MethodNotAllowed:
    return MethodNotAllowed(
        f"method: expected {' or '.join(allowed)} for {path}, got {method}", allowed=allowed
    )


def error_response(status: int, message: str) -> Response[Any]:
    return json_response(error_body(message), status)


class MultiFormatApp:
    """Serves one app's routes to whichever Powertools resolver matches the event's payload format."""

    def __init__(self, routes: ServedRoutes) -> None:
        self.routes = routes
        self._rest_api = APIGatewayRestResolver()
        self._http_api = APIGatewayHttpResolver()
        self._function_url = LambdaFunctionUrlResolver()
        for resolver in (self._rest_api, self._http_api, self._function_url):
            resolver.include_router(self.routes.router)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        resolver = self._resolver_for(event)
        if resolver is None:
            response = {
                "statusCode": 400,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"error": UNSUPPORTED_HTTP_EVENT}),
            }
        else:
            response = resolver.resolve(event, context)  # type: ignore[arg-type]
        body = event.get("body")
        if isinstance(body, str):
            metrics.add_metric(name="RequestBytes", unit=MetricUnit.Bytes, value=len(body))
        return response

    def _resolver_for(self, event: Mapping[str, Any]) -> ApiGatewayResolver | None:
        context = event.get("requestContext")
        if not isinstance(context, Mapping):
            return None
        if event.get("version") == "2.0" and isinstance(context.get("http"), Mapping):
            # Function URL events share payload 2.0 but come from a *.lambda-url.* domain.
            if ".lambda-url." in str(context.get("domainName", "")):
                return self._function_url
            return self._http_api
        if "httpMethod" in event:
            return self._rest_api
        return None


def register_error_handlers(routes: ServedRoutes, route_hint: str = INFERENCE_ROUTE_HINT) -> None:
    """Map errors once per app: MaasError to its status, unknown routes to 404/405, the rest to 500.

    `route_hint` completes the 404 message "route: expected ..., got METHOD path"."""
    router = routes.router

    @router.exception_handler(MaasError)
    def domain_error(exc: MaasError) -> Response[Any]:
        log_failure(exc)
        response = error_response(exc.status, exc.message)
        if isinstance(exc, MethodNotAllowed):
            response.headers["Allow"] = ", ".join(exc.allowed)
        return response

    @router.exception_handler(NotFoundError)
    def unknown_route(_: NotFoundError) -> Response[Any]:
        event = router.current_event
        path = event.path if len(event.path) <= MAX_ECHOED_PATH else event.path[:MAX_ECHOED_PATH] + "..."
        method = event.http_method.upper()
        # The REST API resolver ignores trailing slashes; the table must match the way it does.
        allowed = routes.methods_for(event.path, trailing_slashes=isinstance(event, APIGatewayProxyEvent))
        if allowed and method not in allowed:
            response: Response[Any] = domain_error(method_not_allowed(path, method, allowed))
            return response
        return error_response(404, f"route: expected {route_hint}, got {method} {path}")

    @router.exception_handler(Exception)
    def unexpected_error(exc: Exception) -> Response[Any]:
        log_unexpected(exc)
        return error_response(500, INTERNAL_ERROR_MESSAGE)
