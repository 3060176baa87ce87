"""template.yaml is deployable (cfn-lint, SAM transform), least-privilege, and declares every served route."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from cfnlint.api import lint_file

from maas.config import Settings
from maas.local.sam import DEFAULT_ROUTE
from maas.local.template_reader import load_template
from maas.local.template_routes import TemplateRoutes
from maas.registry.store import ModelRegistry
from tests.infra.deployed import TEMPLATE, translate

SERVED_ROUTES = [
    "GET /",
    "HEAD /",
    "GET /v2/health/live",
    "HEAD /v2/health/live",
    "GET /v2/health/ready",
    "HEAD /v2/health/ready",
    "GET /v2",
    "HEAD /v2",
    "GET /v2/models/{name}",
    "HEAD /v2/models/{name}",
    "GET /v2/models/{name}/ready",
    "HEAD /v2/models/{name}/ready",
    "GET /v2/models/{name}/versions/{version}",
    "HEAD /v2/models/{name}/versions/{version}",
    "GET /v2/models/{name}/versions/{version}/ready",
    "HEAD /v2/models/{name}/versions/{version}/ready",
    "POST /v2/models/{name}/infer",
    "POST /v2/models/{name}/versions/{version}/infer",
    "GET /v2/models",
    "HEAD /v2/models",
    "POST /v2/repository/index",
    "GET /v1/models",
    "HEAD /v1/models",
    "ANY /v1/models/{proxy+}",
    "GET /openapi.json",
    "HEAD /openapi.json",
    "GET /docs",
    "HEAD /docs",
]
# Served by RegistryFunction, and only to IAM-signed callers.
REGISTRY_ROUTES = [
    "GET /registry/models",
    "HEAD /registry/models",
    "GET /registry/models/{name}",
    "HEAD /registry/models/{name}",
    "GET /registry/models/{name}/versions/{version}",
    "HEAD /registry/models/{name}/versions/{version}",
    "PUT /registry/models/{name}/aliases/{alias}",
    "DELETE /registry/models/{name}/aliases/{alias}",
    "POST /registry/models/{name}/aliases/{alias}/rollback",
    "POST /registry/models/{name}/promote",
    "PUT /registry/models/{name}/versions/{version}/tags",
    "POST /registry/models/{name}/versions/{version}/archive",
]


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
    assert {*SERVED_ROUTES, *REGISTRY_ROUTES, "ANY $default"} <= declared


def test_registry_routes_require_iam_and_reach_the_registry_function(translated: dict[str, Any]) -> None:
    body = translated["Resources"]["MaasHttpApi"]["Properties"]["Body"]
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for route in REGISTRY_ROUTES:
        method, path = route.split(" ", 1)
        operation = body["paths"][path][method.lower()]
        assert operation.get("security") == [{"AWS_IAM": []}], route
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert "${RegistryFunction.Arn}" in uri, route
    for route in SERVED_ROUTES:
        method, path = route.split(" ", 1)
        verb = "x-amazon-apigateway-any-method" if method == "ANY" else method.lower()
        operation = body["paths"][path][verb]
        assert "${InferFunction.Arn}" in operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]


def test_every_served_route_and_the_catch_all_are_declared() -> None:
    routes = load_template(TEMPLATE).routes
    route_keys = {route.route_key for route in routes}
    assert set(SERVED_ROUTES) <= route_keys
    assert DEFAULT_ROUTE in route_keys
    registry = {route.route_key for route in routes if route.function_id == "RegistryFunction"}
    assert registry == set(REGISTRY_ROUTES)


def _infer_rules() -> list[tuple[str, str]]:
    from maas.api.http_app import HttpApp

    return HttpApp(service=_UnusedService()).routes.rules  # type: ignore[arg-type]


def _registry_rules() -> list[tuple[str, str]]:
    from maas.api.registry_app import RegistryHttpApp
    from maas.registry.admin import RegistryAdmin

    # Routes are registered without touching storage, so the registry needs no client.
    registry = ModelRegistry(None, "unused")  # type: ignore[arg-type]
    return RegistryHttpApp(RegistryAdmin(registry), Settings()).routes.rules


@pytest.mark.parametrize(
    ("function", "served_rules"), [("InferFunction", _infer_rules), ("RegistryFunction", _registry_rules)]
)
def test_the_api_serves_no_route_the_template_lacks(
    function: str, served_rules: Callable[[], list[tuple[str, str]]]
) -> None:
    """Drift guard: every route a function serves must reach it through a route API Gateway knows,
    not only through the $default catch-all (which a stricter deployment might drop)."""
    served = served_rules()
    assert served, "the API declares no routes; has its registration changed?"
    table = TemplateRoutes(load_template(TEMPLATE).routes)
    unrouted = []
    for method, rule in served:
        concrete = re.sub(r"<\w+>", "m", rule)
        match = table.match(method, concrete)
        if match is None or match.route.path == DEFAULT_ROUTE or match.route.function_id != function:
            unrouted.append(f"{method} {rule}")
    assert unrouted == []


class _UnusedService:
    """Routes are registered without calling the service; only its settings are read."""

    settings = Settings()
