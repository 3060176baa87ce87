"""template.yaml is deployable (cfn-lint, SAM transform), least-privilege, and declares every served route."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from cfnlint.api import lint_file

from maas.api.route_table import GENERATE, INFER, OPENAI_CATCH_ALL_ROUTE, REGISTRY, Function, routes_of
from maas.api.routing import ServedRoutes
from maas.apps.generate import generate_http_app
from maas.apps.infer import infer_http_app
from maas.apps.registry import registry_http_app
from maas.config import Settings
from maas.local.sam import DEFAULT_ROUTE
from maas.local.template_reader import load_template
from maas.local.template_routes import TemplateRoutes
from maas.registry.admin import RegistryAdmin
from maas.registry.store import ModelRegistry
from tests.infra.deployed import TEMPLATE, translate

FUNCTION_IDS: dict[Function, str] = {
    INFER: "InferFunction",
    REGISTRY: "RegistryFunction",
    GENERATE: "GenerateFunction",
}
# Whatever no route names reaches the infer function ($default); whatever else is under /openai/v1 the
# generate function. Each answers 404 or 405 for it, in its own error shape.
CATCH_ALLS: dict[Function, set[str]] = {
    INFER: {DEFAULT_ROUTE},
    REGISTRY: set(),
    GENERATE: {OPENAI_CATCH_ALL_ROUTE},
}


def gateway_routes(function: Function) -> set[str]:
    """The route keys template.yaml must declare for `function`: its rows of the route table, each GET with
    its HEAD twin, and V1's name:verb routes through the proxy route."""
    return {key for route in routes_of(function) for key in route.gateway_route_keys}


SERVED_ROUTES = gateway_routes(INFER)
# Served by RegistryFunction, and only to IAM-signed callers.
REGISTRY_ROUTES = gateway_routes(REGISTRY)
GENERATE_ROUTES = gateway_routes(GENERATE)


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


def test_cfn_lint_reports_no_errors() -> None:
    matches = lint_file(TEMPLATE)
    for match in matches:
        print(f"cfn-lint {match.rule.id}: {match.message} (line {match.linenumber})")
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert errors == [], [f"{m.rule.id}: {m.message}" for m in errors]


def test_sam_transform_produces_an_http_api_with_every_route(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    types = {r["Type"] for r in resources.values()}
    assert {"AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::ApiGatewayV2::Api"} <= types
    assert "AWS::S3::Bucket" in types
    paths = resources["MaasHttpApi"]["Properties"]["Body"]["paths"]
    declared = {
        f"{method.upper().replace('X-AMAZON-APIGATEWAY-ANY-METHOD', 'ANY')} {path}"
        for path, methods in paths.items()
        for method in methods
    }
    assert {
        *SERVED_ROUTES,
        *REGISTRY_ROUTES,
        *GENERATE_ROUTES,
        "ANY $default",
        OPENAI_CATCH_ALL_ROUTE,
    } <= declared


def test_registry_routes_require_iam_and_reach_the_registry_function(translated: dict[str, Any]) -> None:
    body = translated["Resources"]["MaasHttpApi"]["Properties"]["Body"]
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for route in REGISTRY_ROUTES:
        method, path = route.split(" ", 1)
        operation = body["paths"][path][method.lower()]
        assert operation.get("security") == [{"AWS_IAM": []}], route
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert "${RegistryFunction.Arn}" in uri, route
    for function, routes in ((INFER, SERVED_ROUTES), (GENERATE, GENERATE_ROUTES | {OPENAI_CATCH_ALL_ROUTE})):
        for route in routes:
            method, path = route.split(" ", 1)
            verb = "x-amazon-apigateway-any-method" if method == "ANY" else method.lower()
            operation = body["paths"][path][verb]
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            # The live alias: the published version, which SnapStart applies to.
            assert f"${{{FUNCTION_IDS[function]}Aliaslive}}" in uri, route


@pytest.mark.parametrize("function", [INFER, REGISTRY, GENERATE])
def test_the_template_declares_exactly_the_route_tables_routes(function: Function) -> None:
    routes = load_template(TEMPLATE).routes
    declared = {
        route.route_key
        for route in routes
        if route.function_id == FUNCTION_IDS[function] and not route.streaming
    }

    assert declared - CATCH_ALLS[function] == gateway_routes(function)
    assert CATCH_ALLS[function] <= declared


def test_the_streaming_api_streams_exactly_the_routes_that_answer_with_events() -> None:
    """The generation routes that can answer as Server-Sent Events are the REST API's streamed ones, so
    `make serve` and AWS stream the same routes, and the HTTP API still answers them whole."""
    streamed = {route.route_key for route in load_template(TEMPLATE).routes if route.streaming}
    event_routes = {f"{r.method} {r.path}" for r in routes_of(GENERATE) if r.event_stream is not None}

    assert streamed == event_routes
    assert all(
        route.function_id == FUNCTION_IDS[GENERATE]
        for route in load_template(TEMPLATE).routes
        if route.streaming
    )


def _infer_routes() -> ServedRoutes:
    return infer_http_app(_UnusedService()).routes  # type: ignore[arg-type]


def _registry_routes() -> ServedRoutes:
    # Routes are registered without touching storage, so the registry needs no client.
    registry = ModelRegistry(None, "unused")  # type: ignore[arg-type]
    return registry_http_app(RegistryAdmin(registry), Settings()).routes


def _generate_routes() -> ServedRoutes:
    return generate_http_app(_UnusedService()).routes  # type: ignore[arg-type]


SERVING_APPS = [(INFER, _infer_routes), (REGISTRY, _registry_routes), (GENERATE, _generate_routes)]


@pytest.mark.parametrize(("function", "served_routes"), SERVING_APPS)
def test_each_function_serves_exactly_its_rows_of_the_route_table(
    function: Function, served_routes: Callable[[], ServedRoutes]
) -> None:
    served = served_routes().served

    assert len(served) == len(set(served))
    assert set(served) == set(routes_of(function))


@pytest.mark.parametrize(("function", "served_routes"), SERVING_APPS)
def test_the_api_serves_no_route_the_template_lacks(
    function: Function, served_routes: Callable[[], ServedRoutes]
) -> None:
    """Drift guard: every route a function serves must reach it through a route API Gateway knows,
    not only through the $default catch-all (which a stricter deployment might drop)."""
    served = served_routes().rules
    assert served, "the API declares no routes; has its registration changed?"
    table = TemplateRoutes(load_template(TEMPLATE).routes)
    unrouted = []
    for method, rule in served:
        concrete = re.sub(r"<\w+>", "m", rule)
        match = table.match(method, concrete)
        if (
            match is None
            or match.route.route_key in CATCH_ALLS[function] | {DEFAULT_ROUTE}
            or match.route.function_id != FUNCTION_IDS[function]
        ):
            unrouted.append(f"{method} {rule}")
    assert unrouted == []


class _UnusedService:
    """Routes are registered without calling the service; only its settings are read."""

    settings = Settings()
