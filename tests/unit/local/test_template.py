"""The local stack's reading of template.yaml as CloudFormation deploys it: parameters and their
overrides, Conditions, Fn::If and AWS::NoValue, conditional resources, and each route's authorization
as API Gateway enforces it. Pure parsing: no server, no AWS."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from maas.local.cloudformation import IntrinsicResolver, TemplateError, UnresolvedIntrinsicError
from maas.local.sam import (
    ANY_METHOD,
    NO_AUTHORIZATION,
    JwtConfiguration,
    RouteAuthorization,
    SamTemplate,
    TemplateRoute,
)
from maas.local.stack import parse_parameter_overrides
from maas.local.template_reader import load_template, parse_template
from maas.local.template_routes import TemplateRoutes
from tests.support.paths import ROOT

# The shape of the project's template: registry routes always on AWS_IAM, data-plane routes chosen by a
# parameter through the OpenAPI body, a bucket and a key that exist only when created.
TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
  ExistingBucketName: {Type: String, Default: ""}
  KmsKeyArn: {Type: String, Default: ""}
  DataPlaneAuth: {Type: String, Default: NONE, AllowedValues: [NONE, JWT, AWS_IAM]}
  JwtIssuer: {Type: String, Default: "", AllowedPattern: "(https?://.+)?"}
  JwtAudience: {Type: CommaDelimitedList, Default: ""}
  Origins: {Type: CommaDelimitedList, Default: ""}
  Storage: {Type: Number, Default: 2048, MinValue: 512, MaxValue: 10240}
Conditions:
  CreateBucket: !Equals [!Ref ExistingBucketName, ""]
  CreateKmsKey: !And [!Condition CreateBucket, !Equals [!Ref KmsKeyArn, ""]]
  UsesKmsKey: !Or [!Condition CreateKmsKey, !Not [!Equals [!Ref KmsKeyArn, ""]]]
  DataPlaneJwt: !Equals [!Ref DataPlaneAuth, JWT]
  DataPlaneIam: !Equals [!Ref DataPlaneAuth, AWS_IAM]
  HasOrigins: !Not [!Equals [!Join ["", !Ref Origins], ""]]
Globals:
  Function:
    Runtime: python3.12
    Environment:
      Variables:
        BUCKET: !If [CreateBucket, !Sub "maas-${Stage}-${AWS::AccountId}", !Ref ExistingBucketName]
        KEY: !If [UsesKmsKey, !If [CreateKmsKey, !GetAtt Key.Arn, !Ref KmsKeyArn], !Ref AWS::NoValue]
        ARN: !Sub
          - "arn:aws:s3:::${Bucket}/models/*"
          - Bucket: !If [CreateBucket, !Sub "maas-${Stage}", !Ref ExistingBucketName]
Resources:
  Key:
    Type: AWS::KMS::Key
    Condition: CreateKmsKey
  Bucket:
    Type: AWS::S3::Bucket
    Condition: CreateBucket
    Properties:
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt Jobs.Arn
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: !If [UsesKmsKey, alias/maas, !Ref AWS::NoValue]
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        EnableIamAuthorizer: true
      DefinitionBody:
        openapi: "3.0.1"
        paths:
          "/v2/models/{name}/infer":
            post:
              security: !If [DataPlaneJwt, [{DataPlaneJwt: []}], !If [DataPlaneIam, [{AWS_IAM: []}], []]]
          "/v1/models/{proxy+}":
            x-amazon-apigateway-any-method:
              security: !If [DataPlaneJwt, [{DataPlaneJwt: []}], !If [DataPlaneIam, [{AWS_IAM: []}], []]]
          "$default":
            x-amazon-apigateway-any-method:
              security: !If [DataPlaneJwt, [{DataPlaneJwt: []}], !If [DataPlaneIam, [{AWS_IAM: []}], []]]
        components:
          securitySchemes:
            DataPlaneJwt: !If
              - DataPlaneJwt
              - type: oauth2
                x-amazon-apigateway-authorizer:
                  type: jwt
                  identitySource: "$request.header.Authorization"
                  jwtConfiguration:
                    issuer: !Ref JwtIssuer
                    audience: !Ref JwtAudience
              - !Ref AWS::NoValue
        x-amazon-apigateway-cors: !If [HasOrigins, {allowOrigins: !Ref Origins}, !Ref AWS::NoValue]
  Infer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: infer/
      Handler: app.handler
      Events:
        Infer: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: "/v2/models/{name}/infer"}}
        V1: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: ANY, Path: "/v1/models/{proxy+}"}}
        Health: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: /v2/health/live}}
        CatchAll: {Type: HttpApi, Properties: {ApiId: !Ref Api}}
  Registry:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: registry/
      Handler: app.handler
      Events:
        List:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /registry/models, Auth: {Authorizer: AWS_IAM}}
        Alias:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: PUT
            Path: "/registry/models/{name}/aliases/{alias}"
            Auth: {Authorizer: AWS_IAM}
  Cleanup:
    Type: AWS::Serverless::Function
    Condition: CreateBucket
    Properties:
      CodeUri: cleanup/
      Handler: app.handler
      Events:
        Sweep: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: /cleanup}}
"""

IAM = RouteAuthorization("AWS_IAM", "AWS_IAM")


def routes_by_key(template: SamTemplate) -> dict[str, TemplateRoute]:
    return {route.route_key: route for route in template.routes}


# ---- parameters and conditions


def test_a_number_within_its_bounds_is_taken() -> None:
    for storage in ("512", "10240", "4096.0"):
        assert parse_template(TEMPLATE, {"Storage": storage}).parameter_values["Storage"] == storage


def test_parameter_defaults_hold_unless_overridden() -> None:
    template = parse_template(TEMPLATE, {"Stage": "prod"})

    assert template.parameter_values["Stage"] == "prod"
    assert template.parameter_values["DataPlaneAuth"] == "NONE"
    assert template.parameters["JwtAudience"].is_list


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"DataPlaneAuht": "JWT"}, "expected names from the template's Parameters", id="a typo"),
        pytest.param({"DataPlaneAuth": "jwt"}, "expected one of NONE, JWT, AWS_IAM, got 'jwt'", id="allowed"),
        pytest.param({"JwtIssuer": "ftp://x"}, "expected a value matching", id="pattern"),
        pytest.param({"Storage": "20000"}, "expected a number from 512 to 10240, got '20000'", id="max"),
        pytest.param({"Storage": "511"}, "Storage: expected a number from 512 to 10240, got '511'", id="min"),
        pytest.param({"Storage": "big"}, "Storage: expected a number, got 'big'", id="number"),
    ],
)
def test_an_override_cloudformation_would_refuse_is_refused(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_template(TEMPLATE, overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {},
            {"CreateBucket": True, "CreateKmsKey": True, "UsesKmsKey": True, "HasOrigins": False},
        ),
        (
            {"ExistingBucketName": "mine"},
            {"CreateBucket": False, "CreateKmsKey": False, "UsesKmsKey": False, "HasOrigins": False},
        ),
        (
            {"ExistingBucketName": "mine", "KmsKeyArn": "arn:aws:kms:us-east-1:1:key/k", "Origins": "a,b"},
            {"CreateBucket": False, "CreateKmsKey": False, "UsesKmsKey": True, "HasOrigins": True},
        ),
    ],
)
def test_conditions_combine_equals_not_and_or_and_condition_references(
    overrides: dict[str, str], expected: dict[str, bool]
) -> None:
    resolver = IntrinsicResolver.for_template(parse_template(TEMPLATE, overrides))

    assert {name: resolver.condition(name) for name in expected} == expected


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        pytest.param("A: !Condition B\n  B: !Not [!Condition A]", "expected no cycle", id="a cycle"),
        pytest.param("A: !Condition Missing", "expected one of the template's Conditions", id="unknown"),
        pytest.param("A: !Ref Stage", "expected Fn::Equals, Fn::Not, Fn::And, Fn::Or", id="not a test"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_is_a_template_error(conditions: str, message: str) -> None:
    text = f"""\
Parameters:
  Stage: {{Type: String, Default: dev}}
Conditions:
  {conditions}
Resources:
  Queue: {{Type: AWS::SQS::Queue, Condition: A}}
"""
    with pytest.raises(TemplateError, match=message):
        parse_template(text)


def test_a_condition_on_a_parameter_without_a_value_asks_for_an_override() -> None:
    text = """\
Parameters:
  Name: {Type: String}
Conditions:
  Named: !Not [!Equals [!Ref Name, ""]]
Resources:
  Queue: {Type: AWS::SQS::Queue, Condition: Named}
"""
    with pytest.raises(
        TemplateError, match=r"Queue\.Condition: Ref 'Name': no local value; give the parameter"
    ):
        parse_template(text)

    assert list(parse_template(text, {"Name": "x"}).queues) == ["Queue"]


# ---- conditional resources, Fn::If and AWS::NoValue


def test_resources_whose_condition_is_false_do_not_exist_nor_do_their_routes() -> None:
    created = parse_template(TEMPLATE)
    existing = parse_template(TEMPLATE, {"ExistingBucketName": "mine"})

    assert {"Key", "Bucket", "Cleanup"} <= set(created.resources)
    assert not {"Key", "Bucket", "Cleanup"} & set(existing.resources)
    assert "POST /cleanup" in routes_by_key(created)
    assert "POST /cleanup" not in routes_by_key(existing)
    assert "Cleanup" not in existing.functions
    assert [n.bucket_id for n in created.queue_notifications] == ["Bucket"]
    assert existing.queue_notifications == ()


def test_fn_if_takes_its_branch_and_no_value_removes_the_property() -> None:
    created = parse_template(TEMPLATE)
    existing = parse_template(TEMPLATE, {"ExistingBucketName": "mine"})

    assert created.queues["Jobs"].attributes == {"KmsMasterKeyId": "alias/maas"}
    assert existing.queues["Jobs"].attributes == {}
    body = existing.resources["Api"]["Properties"]["DefinitionBody"]
    assert "x-amazon-apigateway-cors" not in body
    assert body["components"]["securitySchemes"] == {}
    assert body["paths"]["$default"]["x-amazon-apigateway-any-method"]["security"] == []


def test_environment_variables_resolve_through_fn_if_and_sub_maps_and_no_value_is_left_out() -> None:
    created = parse_template(TEMPLATE)
    existing = parse_template(TEMPLATE, {"ExistingBucketName": "mine"})
    resolver = IntrinsicResolver.for_template(created, attributes={"Key": {"Arn": "arn:local:key"}})

    assert resolver.resolve_environment(created.functions["Infer"].environment, owner="Infer") == {
        "BUCKET": "maas-dev-123456789012",
        "KEY": "arn:local:key",
        "ARN": "arn:aws:s3:::maas-dev/models/*",
    }
    existing_resolver = IntrinsicResolver.for_template(existing)
    assert existing_resolver.resolve_environment(existing.functions["Infer"].environment, owner="Infer") == {
        "BUCKET": "mine",
        "ARN": "arn:aws:s3:::mine/models/*",
    }


@pytest.mark.parametrize(
    ("intrinsic", "expected"),
    [
        ({"Fn::If": ["DataPlaneIam", "signed", "open"]}, "open"),
        ({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "b"),
        ({"Fn::Select": [0, {"Ref": "JwtAudience"}]}, "api"),
        ({"Fn::Join": ["+", {"Ref": "JwtAudience"}]}, "api+cli"),
        ({"Fn::Sub": ["${A}-${B}", {"A": {"Fn::If": ["CreateBucket", "new", "old"]}, "B": "x"}]}, "new-x"),
    ],
)
def test_the_resolver_evaluates_conditions_inside_intrinsics(intrinsic: Any, expected: str) -> None:
    template = parse_template(TEMPLATE, {"JwtAudience": "api,cli"})

    assert IntrinsicResolver.for_template(template).resolve(intrinsic) == expected


def test_resolve_value_keeps_structure_and_lists() -> None:
    resolver = IntrinsicResolver.for_template(parse_template(TEMPLATE, {"JwtAudience": "api, cli"}))

    value = {
        "audience": {"Ref": "JwtAudience"},
        "items": [1, {"Ref": "AWS::NoValue"}, {"Fn::If": ["CreateBucket", True, False]}],
        "gone": {"Fn::If": ["DataPlaneJwt", "x", {"Ref": "AWS::NoValue"}]},
    }

    assert resolver.resolve_value(value) == {"audience": ["api", "cli"], "items": [1, True]}
    assert resolver.resolve_value({"Ref": "AWS::NoValue"}) is None
    with pytest.raises(UnresolvedIntrinsicError):
        resolver.resolve({"Ref": "AWS::NoValue"})


def test_a_sub_variable_the_text_does_not_use_needs_no_local_value() -> None:
    resolver = IntrinsicResolver(parameters={"Stage": "dev"})

    assert (
        resolver.resolve({"Fn::Sub": ["maas-${Stage}", {"Unused": {"Fn::GetAtt": ["X", "Arn"]}}]})
        == "maas-dev"
    )


# ---- route authorization


@pytest.mark.parametrize(
    ("data_plane", "expected"),
    [("NONE", NO_AUTHORIZATION), ("AWS_IAM", RouteAuthorization("AWS_IAM", "AWS_IAM"))],
)
def test_data_plane_routes_follow_the_openapi_security_the_parameter_chooses(
    data_plane: str, expected: RouteAuthorization
) -> None:
    routes = routes_by_key(parse_template(TEMPLATE, {"DataPlaneAuth": data_plane}))

    for key in ("POST /v2/models/{name}/infer", "ANY /v1/models/{proxy+}", "$default"):
        assert routes[key].authorization == expected, key
    assert routes["GET /registry/models"].authorization == IAM
    assert routes["PUT /registry/models/{name}/aliases/{alias}"].authorization == IAM


def test_jwt_data_plane_routes_carry_the_issuer_and_audience() -> None:
    overrides = {"DataPlaneAuth": "JWT", "JwtIssuer": "https://id.example.com", "JwtAudience": "api,cli"}
    routes = routes_by_key(parse_template(TEMPLATE, overrides))

    jwt = RouteAuthorization(
        "JWT",
        "DataPlaneJwt",
        JwtConfiguration("https://id.example.com", ("api", "cli"), ("$request.header.Authorization",)),
    )
    assert routes["POST /v2/models/{name}/infer"].authorization == jwt
    assert routes["$default"].authorization == jwt
    assert routes["GET /registry/models"].authorization == IAM


def test_a_jwt_issuer_without_a_value_is_kept_as_none_so_every_token_is_refused() -> None:
    routes = routes_by_key(parse_template(TEMPLATE, {"DataPlaneAuth": "JWT"}))

    configuration = routes["$default"].authorization.jwt
    assert configuration == JwtConfiguration(None, (), ("$request.header.Authorization",))


def test_a_route_absent_from_the_openapi_body_falls_back_to_no_authorization() -> None:
    routes = routes_by_key(parse_template(TEMPLATE, {"DataPlaneAuth": "AWS_IAM"}))

    assert routes["GET /v2/health/live"].authorization == NO_AUTHORIZATION


SAM_AUTH_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Issuer: {Type: String, Default: "https://issuer.example.com"}
Globals:
  HttpApi:
    Auth:
      Authorizers:
        Users:
          IdentitySource: $request.header.X-Token
          AuthorizationScopes: [read]
          JwtConfiguration: {issuer: !Ref Issuer, audience: [web]}
        Custom:
          FunctionArn: arn:aws:lambda:us-east-1:1:function:auth
      DefaultAuthorizer: Users
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Events:
        Default: {Type: HttpApi, Properties: {Method: GET, Path: /default}}
        Scoped:
          Type: HttpApi
          Properties: {Method: GET, Path: /scoped, Auth: {AuthorizationScopes: [write, admin]}}
        Open: {Type: HttpApi, Properties: {Method: GET, Path: /open, Auth: {Authorizer: NONE}}}
        Iam: {Type: HttpApi, Properties: {Method: GET, Path: /iam, Auth: {Authorizer: AWS_IAM}}}
        Lambda: {Type: HttpApi, Properties: {Method: GET, Path: /lambda, Auth: {Authorizer: Custom}}}
"""


def test_sam_authorizers_default_authorizer_and_event_overrides_on_the_implicit_api() -> None:
    routes = routes_by_key(parse_template(SAM_AUTH_TEMPLATE))

    users = JwtConfiguration("https://issuer.example.com", ("web",), ("$request.header.X-Token",))
    assert routes["GET /default"].authorization == RouteAuthorization("JWT", "Users", users, ("read",))
    assert routes["GET /scoped"].authorization == RouteAuthorization(
        "JWT", "Users", users, ("write", "admin")
    )
    assert routes["GET /open"].authorization == NO_AUTHORIZATION
    assert routes["GET /iam"].authorization == IAM
    assert routes["GET /lambda"].authorization == RouteAuthorization("CUSTOM", "Custom")


def test_an_authorizer_the_api_does_not_define_is_a_template_error() -> None:
    text = SAM_AUTH_TEMPLATE.replace("Authorizer: Custom", "Authorizer: Nobody")

    with pytest.raises(TemplateError, match=r"Fn.Lambda: authorizer 'Nobody': expected one of AWS_IAM, NONE"):
        parse_template(text)


def test_the_project_template_protects_the_registry_and_opens_the_data_plane_by_default() -> None:
    template = load_template(ROOT / "template.yaml")

    by_authorization = Counter(
        (route.route_key.split(" ")[-1].startswith("/registry"), route.authorization.type)
        for route in template.routes
    )
    assert set(by_authorization) == {(True, "AWS_IAM"), (False, "NONE")}


def test_the_project_template_puts_the_data_plane_behind_iam_when_asked() -> None:
    parameters = load_template(ROOT / "template.yaml").parameters
    if "DataPlaneAuth" not in parameters:
        pytest.skip("template.yaml has no DataPlaneAuth parameter yet")

    template = load_template(ROOT / "template.yaml", {"DataPlaneAuth": "AWS_IAM"})

    assert {route.authorization.type for route in template.routes} == {"AWS_IAM"}


def test_head_on_the_project_templates_get_paths_never_selects_a_get_route() -> None:
    """HTTP API matches HEAD to HEAD and ANY routes (then $default) only: a GET path's HEAD finds the HEAD
    route declared beside it, or else no route of its own, never the GET."""
    template = load_template(ROOT / "template.yaml")
    table = TemplateRoutes(template.routes)

    for get in (route for route in template.routes if route.method == "GET"):
        match = table.match("HEAD", re.sub(r"\{[^}]+\}", "x", get.path))

        assert match is None or match.route.method in ("HEAD", ANY_METHOD) or match.route.path == "$default"
        if any(route.method == "HEAD" and route.path == get.path for route in template.routes):
            assert match is not None and (match.route.method, match.route.path) == ("HEAD", get.path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("DataPlaneAuth=AWS_IAM", {"DataPlaneAuth": "AWS_IAM"}),
        (
            "DataPlaneAuth=JWT JwtAudience=api,cli 'JwtIssuer=https://id.example.com'",
            {
                "DataPlaneAuth": "JWT",
                "JwtAudience": "api,cli",
                "JwtIssuer": "https://id.example.com",
            },
        ),
        ("ExistingBucketName=", {"ExistingBucketName": ""}),
    ],
)
def test_make_serve_parameter_overrides_read_like_sams(text: str, expected: dict[str, str]) -> None:
    assert parse_parameter_overrides(text) == expected


def test_a_parameter_override_without_a_value_is_refused() -> None:
    with pytest.raises(TemplateError, match="expected Name=Value items, got 'DataPlaneAuth'"):
        parse_parameter_overrides("DataPlaneAuth")
