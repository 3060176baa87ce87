"""template.yaml is deployable (cfn-lint, SAM transform), least-privilege, and declares every served route."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from maas.config import Settings
from maas.local.gateway import RouteTable
from maas.local.template import DEFAULT_ROUTE, load_template, parse_cloudformation_yaml
from maas.registry.store import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

SERVED_ROUTES = [
    "GET /v2/health/live",
    "GET /v2/health/ready",
    "GET /v2",
    "GET /v2/models/{name}",
    "GET /v2/models/{name}/ready",
    "GET /v2/models/{name}/versions/{version}",
    "GET /v2/models/{name}/versions/{version}/ready",
    "POST /v2/models/{name}/infer",
    "POST /v2/models/{name}/versions/{version}/infer",
    "GET /v2/models",
    "POST /v2/repository/index",
    "GET /v1/models",
    "ANY /v1/models/{proxy+}",
    "GET /openapi.json",
    "GET /docs",
]
# Served by RegistryFunction, and only to IAM-signed callers.
REGISTRY_ROUTES = [
    "GET /registry/models",
    "GET /registry/models/{name}",
    "GET /registry/models/{name}/versions/{version}",
    "PUT /registry/models/{name}/aliases/{alias}",
    "DELETE /registry/models/{name}/aliases/{alias}",
    "POST /registry/models/{name}/aliases/{alias}/rollback",
    "POST /registry/models/{name}/promote",
    "PUT /registry/models/{name}/versions/{version}/tags",
    "POST /registry/models/{name}/versions/{version}/archive",
]
WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl"}
ALIASES = "arn:${AWS::Partition}:s3:::${ModelBucket}/models/*/aliases/*"
META = "arn:${AWS::Partition}:s3:::${ModelBucket}/models/*/meta/*"


@pytest.fixture(scope="module")
def translated() -> Iterator[dict[str, Any]]:
    """The CloudFormation SAM would deploy. Local code paths are swapped for S3 URIs, as `sam package` does,
    and managed policies come from an empty offline map, so no AWS call is made."""
    document = parse_cloudformation_yaml(TEMPLATE.read_text(encoding="utf-8"))
    packaged = copy.deepcopy(document)
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(uri), str):
                properties[uri] = f"s3://maas-artifacts/{properties[uri].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield Translator(None, Parser()).translate(packaged, parameter_values={}, get_managed_policy_map=dict)


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


def _allowed_statements(translated: dict[str, Any], role: str) -> list[dict[str, Any]]:
    properties = translated["Resources"][role]["Properties"]
    statements = [s for policy in properties["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    return [s for s in statements if s["Effect"] == "Allow"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_each_role_writes_only_its_own_keys(translated: dict[str, Any]) -> None:
    """Infer writes nothing; registry moves aliases and meta; batch writes job outputs; async, results."""
    roles = [rid for rid, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    writers: dict[str, dict[str, set[str]]] = {}
    for role in roles:
        for statement in _allowed_statements(translated, role):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, (role, action)
                if action in WRITE_ACTIONS or not action.startswith(("s3:Get", "s3:List")):
                    resources = {r["Fn::Sub"] for r in _as_list(statement["Resource"])}
                    writers.setdefault(role, {}).setdefault(action, set()).update(resources)
    job_outputs = {
        f"arn:${{AWS::Partition}}:s3:::${{ModelBucket}}/jobs/*/{name}"
        for name in ("output.jsonl", "status.json")
    }
    assert writers == {
        "RegistryFunctionRole": {"s3:PutObject": {ALIASES, META}, "s3:DeleteObject": {ALIASES}},
        "BatchFunctionRole": {"s3:PutObject": job_outputs, "s3:AbortMultipartUpload": job_outputs},
        "AsyncFunctionRole": {"s3:PutObject": {"arn:${AWS::Partition}:s3:::${ModelBucket}/results/*"}},
    }


def test_registry_function_uses_the_layer_and_the_bucket(translated: dict[str, Any]) -> None:
    function = translated["Resources"]["RegistryFunction"]["Properties"]
    assert function["Handler"] == "app.lambda_handler"
    assert function["Code"] == {"S3Bucket": "maas-artifacts", "S3Key": "functions/registry.zip"}
    assert function["Environment"]["Variables"]["MAAS_BUCKET"] == {"Ref": "ModelBucket"}
    assert function["Layers"] == translated["Resources"]["InferFunction"]["Properties"]["Layers"]


def test_infer_function_uses_the_layer_and_the_bucket(translated: dict[str, Any]) -> None:
    function = translated["Resources"]["InferFunction"]["Properties"]
    assert function["Handler"] == "app.lambda_handler"
    assert function["Runtime"] == "python3.12"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["Environment"]["Variables"]["MAAS_BUCKET"] == {"Ref": "ModelBucket"}
    assert function["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "maas"
    layer_ids = [r for r, v in translated["Resources"].items() if v["Type"] == "AWS::Lambda::LayerVersion"]
    assert function["Layers"] == [{"Ref": layer_ids[0]}]


def test_infer_role_is_read_only_on_the_models_prefix(translated: dict[str, Any]) -> None:
    role = translated["Resources"]["InferFunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    allowed = [s for s in statements if s["Effect"] == "Allow"]
    actions = {a for s in allowed for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}

    assert actions == {"s3:GetObject", "s3:ListBucket"}
    assert not actions & WRITE_ACTIONS
    assert not any("*" in action for action in actions)
    for statement in allowed:
        resource = statement["Resource"]["Fn::Sub"]
        if statement["Action"] == "s3:GetObject":
            assert resource == "arn:${AWS::Partition}:s3:::${ModelBucket}/models/*"
        else:
            # Bucket-level listing only (no object access): S3 needs it to answer 404, not 403,
            # for a missing alias or version.
            assert resource == "arn:${AWS::Partition}:s3:::${ModelBucket}"
    assert sorted(role["ManagedPolicyArns"]) == [
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    ]


def test_model_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    resources = parse_cloudformation_yaml(TEMPLATE.read_text(encoding="utf-8"))["Resources"]
    bucket = resources["ModelBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (statement,) = resources["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


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
    table = RouteTable(load_template(TEMPLATE).routes)
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
