"""The HTTP edge: one route table served to REST API v1, HTTP API v2 and Function URL events.

Errors are mapped to statuses here, once: MaasError carries its own; anything else is a 500 whose
details go to the log, not the client.
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
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.v2_routes import RouteTable, build_v2_routes, json_response
from maas.api.v2_types import ErrorResponse
from maas.errors import MaasError, MethodNotAllowed
from maas.observability import logger
from maas.service.inference import InferenceService

MAX_ECHOED_PATH = 200


def error_response(status: int, message: str) -> Response[str]:
    return json_response(ErrorResponse(error=message).model_dump_json(), status)


class HttpApp:
    """Picks the Powertools resolver that matches the event's payload format."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        routes = build_v2_routes(service)
        _register_error_handlers(routes)
        self._rest_api = APIGatewayRestResolver()
        self._http_api = APIGatewayHttpResolver()
        self._function_url = LambdaFunctionUrlResolver()
        for resolver in (self._rest_api, self._http_api, self._function_url):
            resolver.include_router(routes.router)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        resolver = self._resolver_for(event)
        if resolver is None:
            return {
                "statusCode": 400,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps(
                    {"error": "event: expected an API Gateway REST (v1), HTTP API (v2) or Function URL event"}
                ),
            }
        return resolver.resolve(event, context)  # type: ignore[arg-type]

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


def build_http_app(service: InferenceService | None = None) -> HttpApp:
    return HttpApp(service or InferenceService.from_settings())


def _register_error_handlers(routes: RouteTable) -> None:
    router = routes.router

    @router.exception_handler(MaasError)
    def domain_error(exc: MaasError) -> Response[str]:
        if exc.status >= 500:
            logger.error("request failed", extra={"status": exc.status, "error": exc.message})
        return error_response(exc.status, exc.message)

    @router.exception_handler(NotFoundError)
    def unknown_route(_: NotFoundError) -> Response[str]:
        event = router.current_event
        path = event.path if len(event.path) <= MAX_ECHOED_PATH else event.path[:MAX_ECHOED_PATH] + "..."
        allowed = routes.methods_for(event.path)
        if allowed:
            response = error_response(
                MethodNotAllowed.status,
                f"method: expected {' or '.join(allowed)} for {path}, got {event.http_method}",
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return error_response(
            404,
            f"route: expected a V2 route such as GET /v2/models/{{name}} or POST /v2/models/{{name}}/infer, "
            f"got {event.http_method} {path}",
        )

    @router.exception_handler(Exception)
    def unexpected_error(exc: Exception) -> Response[str]:
        logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return error_response(500, "internal error; see the function's logs")
