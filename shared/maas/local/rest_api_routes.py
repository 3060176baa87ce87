"""The routes of template.yaml's streaming REST APIs: the operations whose Lambda proxy integration streams.

API Gateway streams a function's answer only from a REST API integration of type aws_proxy with
`responseTransferMode: STREAM` and the `.../2021-11-15/functions/<arn>/response-streaming-invocations`
URI (InvokeWithResponseStream). Those operations are read here from the API's OpenAPI body, the one place
that says a route streams, so `make serve` streams exactly the routes AWS streams. A STREAM integration
with the buffered `/invocations` URI, or the reverse, is refused: API Gateway would not stream it.
REST APIs without streaming integrations are not emulated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from maas.local.cloudformation import IntrinsicResolver, TemplateError
from maas.local.sam import ANY_METHOD, FunctionSpec, TemplateRoute
from maas.local.sam_authorization import OPENAPI_ANY_METHOD, route_authorization

logger = logging.getLogger(__name__)

SERVERLESS_API_TYPE = "AWS::Serverless::Api"
REST_API_TYPE = "AWS::ApiGateway::RestApi"
OPENAPI_INTEGRATION = "x-amazon-apigateway-integration"
STREAM_TRANSFER_MODE = "STREAM"
STREAMING_INVOCATIONS = "/response-streaming-invocations"
_OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# Inside the integration URI's Fn::Sub, the function the route invokes: ${Function.Arn}, or its
# AutoPublishAlias alias, ${FunctionAlias<name>} (the logical id SAM gives it). Locally, the function.
ALIAS_INFIX = "Alias"
_FUNCTION_ARN = re.compile(r"\$\{(\w+)(\.Arn)?\}")


def streaming_routes(
    resources: Mapping[str, Mapping[str, Any]],
    functions: Mapping[str, FunctionSpec],
    resolver: IntrinsicResolver,
) -> list[TemplateRoute]:
    """Every REST API operation that streams a template function's answer, with its authorization."""
    routes: list[TemplateRoute] = []
    for api_id, resource in resources.items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == SERVERLESS_API_TYPE:
            body = properties.get("DefinitionBody")
        elif resource.get("Type") == REST_API_TYPE:
            body = properties.get("Body")
        else:
            continue
        if not isinstance(body, dict):
            logger.debug("%s: no inline OpenAPI body, so no route of it is emulated", api_id)
            continue
        routes.extend(_api_routes(api_id, body, functions, resolver))
    return routes


def _api_routes(
    api_id: str, body: Mapping[str, Any], functions: Mapping[str, FunctionSpec], resolver: IntrinsicResolver
) -> list[TemplateRoute]:
    routes: list[TemplateRoute] = []
    paths = body.get("paths") or {}
    if not isinstance(paths, dict):
        raise TemplateError(
            f"{api_id}: expected its OpenAPI paths to be a mapping, got {type(paths).__name__}"
        )
    for path, path_item in paths.items():
        if not isinstance(path_item, dict):
            continue
        for key, operation in path_item.items():
            if not isinstance(operation, dict) or (key != OPENAPI_ANY_METHOD and key not in _OPENAPI_METHODS):
                continue
            method = ANY_METHOD if key == OPENAPI_ANY_METHOD else key.upper()
            where = f"{api_id} {method} {path}"
            function_id = _streamed_function(operation.get(OPENAPI_INTEGRATION), functions, where)
            if function_id is None:
                continue
            route = TemplateRoute(
                method, str(path), functions[function_id], event_id=where, api_id=api_id, streaming=True
            )
            authorization = route_authorization(route, {}, {"DefinitionBody": body}, resolver)
            routes.append(replace(route, authorization=authorization))
    return routes


def _streamed_function(integration: Any, functions: Mapping[str, FunctionSpec], where: str) -> str | None:
    """The template function a streaming integration invokes; None when the integration does not stream."""
    if not isinstance(integration, dict):
        return None
    streams = str(integration.get("responseTransferMode", "BUFFERED")).upper() == STREAM_TRANSFER_MODE
    uri = _sub_text(integration.get("uri"))
    streaming_uri = uri is not None and uri.endswith(STREAMING_INVOCATIONS)
    if not streams and not streaming_uri:
        return None
    if str(integration.get("type", "")).lower() != "aws_proxy":
        raise TemplateError(
            f"{where}: expected a streamed integration of type aws_proxy, got {integration.get('type')!r}"
        )
    if streams != streaming_uri:
        raise TemplateError(
            f"{where}: expected responseTransferMode STREAM together with a URI ending in "
            f"{STREAMING_INVOCATIONS}, got responseTransferMode "
            f"{integration.get('responseTransferMode', 'BUFFERED')!r} and URI {uri!r}"
        )
    assert uri is not None
    targets = [_invoked_function(name, bool(arn), functions) for name, arn in _FUNCTION_ARN.findall(uri)]
    if len(targets) != 1 or targets[0] not in functions:
        raise TemplateError(
            f"{where}: expected its URI to name one template function as ${{<Function>.Arn}} or its alias "
            f"${{<Function>Alias<name>}}, got {uri!r}"
        )
    return str(targets[0])


def _invoked_function(name: str, arn: bool, functions: Mapping[str, FunctionSpec]) -> str | None:
    """The template function behind ${name.Arn}, or behind ${name} when it names one's alias."""
    if arn:
        return name
    return next(
        (f for f in functions if name.startswith(f"{f}{ALIAS_INFIX}") and name != f + ALIAS_INFIX), None
    )


def _sub_text(value: Any) -> str | None:
    """The text of a URI written as a plain string, !Sub "..." or !Sub ["...", {...}]."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        argument = value["Fn::Sub"]
        if isinstance(argument, list) and argument:
            argument = argument[0]
        return argument if isinstance(argument, str) else None
    return None
