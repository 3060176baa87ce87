"""template.yaml is deployable (cfn-lint, SAM transform), least-privilege, and declares every served route."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from maas.config import Settings
from maas.local.gateway import RouteTable
from maas.local.template import DEFAULT_ROUTE, load_template, parse_cloudformation_yaml

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
    assert {*SERVED_ROUTES, "ANY $default"} <= declared


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
    route_keys = {route.route_key for route in load_template(TEMPLATE).routes}
    assert set(SERVED_ROUTES) <= route_keys
    assert DEFAULT_ROUTE in route_keys


def test_the_api_serves_no_route_the_template_lacks() -> None:
    """Drift guard: every route the function serves must reach it through a route API Gateway knows,
    not only through the $default catch-all (which a stricter deployment might drop)."""
    from maas.api.http_app import HttpApp

    served = HttpApp(service=_UnusedService()).routes.rules  # type: ignore[arg-type]
    assert served, "the API declares no routes; has its registration changed?"
    table = RouteTable(load_template(TEMPLATE).routes)
    unrouted = []
    for method, rule in served:
        concrete = re.sub(r"<\w+>", "m", rule)
        match = table.match(method, concrete)
        if match is None or match.route.path == DEFAULT_ROUTE:
            unrouted.append(f"{method} {rule}")
    assert unrouted == []


class _UnusedService:
    """Routes are registered without calling the service; only its settings are read."""

    settings = Settings()
