"""The text-generation function in template.yaml: whole answers through the HTTP API, streamed ones through a
REST API whose integrations stream (decision 0020), on our runtime loop through an exec wrapper it ships,
with the data plane's authorization in each mode. Checked on what SAM and CloudFormation would deploy."""

from __future__ import annotations

import os
from typing import Any

import pytest

from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from tests.infra.deployed import ACCOUNT, REGION, Deployment, deploy, translate
from tests.support.paths import ROOT

STREAMED_PATHS = {
    "/openai/v1/chat/completions",
    "/openai/v1/completions",
    "/v2/models/{name}/generate_stream",
    "/v2/models/{name}/versions/{version}/generate_stream",
}
STREAMING_URI = (
    f"arn:aws:apigateway:{REGION}:lambda:path/2021-11-15/functions/<GenerateFunctionAliaslive>"
    "/response-streaming-invocations"
)
HTTP_API_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "NONE": [],
    "JWT": [{"DataPlaneJwt": []}],
    "AWS_IAM": [{"AWS_IAM": []}],
}
ISSUER = "https://idp.example.com/realms/maas"
# What API Gateway gives an HTTP API integration, so whole answers must be decoded well within it.
HTTP_API_INTEGRATION_SECONDS = 30


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


def _deployed(translated: dict[str, Any], mode: str) -> Deployment:
    return deploy(translated, {"DataPlaneAuth": mode, "JwtIssuer": ISSUER, "JwtAudience": "maas-api"})


def _generate(deployment: Deployment) -> dict[str, Any]:
    properties: dict[str, Any] = deployment.resources["GenerateFunction"]["Properties"]
    return properties


@pytest.mark.parametrize("mode", ["NONE", "AWS_IAM"])
def test_the_streaming_api_streams_each_generation_route_from_the_generate_function(
    translated: dict[str, Any], mode: str
) -> None:
    deployment = _deployed(translated, mode)
    (api,) = deployment.of_type("AWS::ApiGateway::RestApi").values()
    body = api["Properties"]["Body"]
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}  # 5-minute idle timeout
    assert set(body["paths"]) == STREAMED_PATHS
    timeout_ms = int(_generate(deployment)["Timeout"]) * 1000
    for path, operations in body["paths"].items():
        assert set(operations) == {"post"}, path
        integration = operations["post"]["x-amazon-apigateway-integration"]
        assert integration == {
            "type": "aws_proxy",
            "httpMethod": "POST",
            "uri": STREAMING_URI,
            "responseTransferMode": "STREAM",
            "timeoutInMillis": timeout_ms,
        }, path
        assert operations["post"]["security"] == ([{"sigv4": []}] if mode == "AWS_IAM" else []), path
    assert body["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_api_gateway_may_invoke_the_generate_function_from_the_streaming_api_only(
    translated: dict[str, Any],
) -> None:
    permission = deploy(translated).resources["GenerateStreamApiInvokes"]["Properties"]
    assert permission == {
        "Action": "lambda:InvokeFunction",  # what InvokeWithResponseStream is authorized by
        "FunctionName": "<GenerateFunctionAliaslive>",  # the alias the integrations invoke
        "Principal": "apigateway.amazonaws.com",
        "SourceArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:<GenerateStreamApi>/*/POST/*",
    }


def test_the_streaming_stage_is_throttled_and_traced(translated: dict[str, Any]) -> None:
    deployment = deploy(translated, {"ThrottlingRateLimit": "50", "ThrottlingBurstLimit": "80"})
    (stage,) = deployment.of_type("AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True
    (setting,) = stage["Properties"]["MethodSettings"]
    assert (setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"]) == ("50", "80")


def test_with_jwt_there_is_no_streaming_api(translated: dict[str, Any]) -> None:
    deployment = _deployed(translated, "JWT")
    assert deployment.of_type("AWS::ApiGateway::RestApi") == {}
    assert "GenerateStreamApiInvokes" not in deployment.resources
    assert translated["Outputs"]["StreamingApiUrl"]["Condition"] == "StreamsResponses"


@pytest.mark.parametrize("mode", HTTP_API_SECURITY)
def test_whole_answers_go_through_the_http_api_with_the_data_planes_auth(
    translated: dict[str, Any], mode: str
) -> None:
    paths = _deployed(translated, mode).resources["MaasHttpApi"]["Properties"]["Body"]["paths"]
    generate = {
        (method, path): operation
        for path, methods in paths.items()
        for method, operation in methods.items()
        if "<GenerateFunctionAliaslive>" in operation["x-amazon-apigateway-integration"]["uri"]
    }
    assert {path for _, path in generate} >= STREAMED_PATHS | {"/openai/v1/models", "/openai/v1/{proxy+}"}
    for route, operation in generate.items():
        assert operation["security"] == HTTP_API_SECURITY[mode], route


def test_the_function_runs_our_runtime_loop_through_the_wrapper_it_ships(translated: dict[str, Any]) -> None:
    source = parse_cloudformation_yaml((ROOT / "template.yaml").read_text(encoding="utf-8"))
    function = source["Resources"]["GenerateFunction"]["Properties"]
    wrapper = function["Environment"]["Variables"]["AWS_LAMBDA_EXEC_WRAPPER"]
    # A zip function's CodeUri is unpacked at the task root.
    shipped = ROOT / function["CodeUri"] / wrapper.removeprefix("/var/task/")
    assert shipped.is_file() and os.access(shipped, os.X_OK), wrapper
    assert "-m maas.apps.streaming_runtime" in shipped.read_text(encoding="utf-8")
    assert function["Handler"] == "app.lambda_handler"


def test_the_decode_budget_fits_whole_answers_and_the_timeout_fits_a_cold_start(
    translated: dict[str, Any],
) -> None:
    budget = translated["Parameters"]["GenerationTimeBudget"]
    properties = _generate(deploy(translated))
    assert properties["Environment"]["Variables"]["MAAS_GENERATION_TIMEOUT"] == str(budget["Default"])
    assert budget["Default"] < HTTP_API_INTEGRATION_SECONDS - 2
    assert budget["MaxValue"] < int(properties["Timeout"])
    # The model's files go to /tmp: more than one fp32 SmolLM2 (540 MB), which the 512 MB default is not.
    assert int(properties["EphemeralStorage"]["Size"]) >= 1024
