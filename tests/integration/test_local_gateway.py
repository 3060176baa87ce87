"""The HTTP API emulator against a throwaway template and function, over real HTTP.

The function echoes the event, its context and its environment back, so each test asserts on the
exact dict a Lambda handler would receive from API Gateway (payload format 2.0).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from maas.local.cloudformation import IntrinsicResolver
from maas.local.gateway import MAX_BODY_BYTES, LocalGateway
from maas.local.sam import DEFAULT_ROUTE, SamTemplate
from maas.local.template_reader import load_template
from maas.local.template_routes import TemplateRoutes
from tests.support.local_projects import write_project

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting: {Type: String, Default: hello}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 5
    Environment:
      Variables:
        GW_GLOBAL_ONLY: from-globals
        GW_SHARED: from-globals
Resources:
  Uploads:
    Type: AWS::S3::Bucket
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      MemorySize: 256
      Environment:
        Variables:
          GW_SHARED: from-function
          GW_GREETING: !Ref Greeting
          GW_BUCKET: !Ref Uploads
          GW_ARN: !Sub "arn:${AWS::Partition}:s3:::${Uploads}/in/*"
          GW_UNRESOLVED: !GetAtt Uploads.Arn
      Events:
        Item: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: GET}}
        SpecialItem: {Type: HttpApi, Properties: {Path: /items/special, Method: GET}}
        AnyItem: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: ANY}}
        Files: {Type: HttpApi, Properties: {Path: "/files/{path+}", Method: GET}}
        Upload: {Type: HttpApi, Properties: {Path: /upload, Method: post}}
        Shaped: {Type: HttpApi, Properties: {Path: "/shaped/{kind}", Method: GET}}
        CatchAll: {Type: HttpApi}
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: other/
      Handler: main.handler
      Events:
        Other: {Type: HttpApi, Properties: {Path: /other, Method: GET}}
"""

ECHO_APP = """\
import base64
import json
import os

import echo_helpers

IMPORTS = echo_helpers.count_import()


def handler(event, context):
    kind = (event.get("pathParameters") or {}).get("kind")
    if kind == "plain":
        return {"hello": "world"}
    if kind == "binary":
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": base64.b64encode(b"\\x89PNG\\x00\\xff").decode(), "isBase64Encoded": True}
    if kind == "cookies":
        return {"statusCode": 201, "cookies": ["a=1", "b=2; Path=/"],
                "multiValueHeaders": {"X-Multi": ["one", "two"]}, "headers": {"X-Flag": True}}
    if kind == "boom":
        raise RuntimeError("the handler failed")
    if kind == "malformed":
        return {"statusCode": "teapot"}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({
            "event": event,
            "imports": IMPORTS,
            "who": echo_helpers.WHO,
            "context": {
                "function_name": context.function_name,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "invoked_function_arn": context.invoked_function_arn,
                "aws_request_id": context.aws_request_id,
                "remaining_ms": context.get_remaining_time_in_millis(),
            },
            "env": {k: v for k, v in os.environ.items() if k.startswith("GW_")},
        }),
    }
"""

ECHO_HELPERS = """\
WHO = "echo"
_count = 0


def count_import():
    global _count
    _count += 1
    return _count
"""

OTHER_APP = """\
import echo_helpers


def handler(event, context):
    return {"statusCode": 200, "body": echo_helpers.WHO + ":" + event["routeKey"]}
"""

OTHER_HELPERS = """\
WHO = "other"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path,
        {
            "template.yaml": TEMPLATE,
            "echo/app.py": ECHO_APP,
            "echo/echo_helpers.py": ECHO_HELPERS,
            "other/main.py": OTHER_APP,
            "other/echo_helpers.py": OTHER_HELPERS,
        },
    )


@pytest.fixture
def template(project: Path) -> SamTemplate:
    return load_template(project / "template.yaml")


@pytest.fixture
def resolver(template: SamTemplate) -> IntrinsicResolver:
    return IntrinsicResolver.for_template(template, resources={"Uploads": "local-uploads"})


@pytest.fixture
def gateway(project: Path, template: SamTemplate, resolver: IntrinsicResolver) -> Iterator[LocalGateway]:
    with LocalGateway(
        template.routes, root=project, port=0, resolver=resolver, max_body_bytes=4096
    ) as running:
        yield running


def request(
    gateway: LocalGateway,
    method: str,
    target: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: list[tuple[str, str]] | None = None,
    *,
    chunked: bool = False,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A raw http.client request, so tests can send duplicate headers and chunked bodies."""
    address = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers or []:
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif isinstance(body, bytes):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def echoed(gateway: LocalGateway, method: str, target: str, **kwargs: Any) -> dict[str, Any]:
    status, _, body = request(gateway, method, target, **kwargs)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


# ---- reading the template


def test_the_template_yields_one_route_per_http_api_event(template: SamTemplate) -> None:
    assert sorted(r.route_key for r in template.routes) == sorted(
        [
            "GET /items/{id}",
            "GET /items/special",
            "ANY /items/{id}",
            "GET /files/{path+}",
            "POST /upload",
            "GET /shaped/{kind}",
            DEFAULT_ROUTE,
            "GET /other",
        ]
    )
    other = next(r for r in template.routes if r.route_key == "GET /other")
    assert (other.function_id, other.code_uri, other.handler) == ("OtherFunction", "other/", "main.handler")


def test_function_environment_merges_over_globals_with_intrinsics_kept(template: SamTemplate) -> None:
    environment = template.functions["EchoFunction"].environment

    assert environment["GW_GLOBAL_ONLY"] == "from-globals"
    assert environment["GW_SHARED"] == "from-function"
    assert environment["GW_GREETING"] == {"Ref": "Greeting"}
    assert environment["GW_UNRESOLVED"] == {"Fn::GetAtt": ["Uploads", "Arn"]}


def test_the_resolver_fills_in_what_a_local_run_knows(
    template: SamTemplate, resolver: IntrinsicResolver
) -> None:
    echo = template.functions["EchoFunction"]
    resolved = resolver.resolve_environment(echo.environment, owner=echo.logical_id)

    assert resolved == {
        "GW_GLOBAL_ONLY": "from-globals",
        "GW_SHARED": "from-function",
        "GW_GREETING": "hello",
        "GW_BUCKET": "local-uploads",
        "GW_ARN": "arn:aws:s3:::local-uploads/in/*",
    }


# ---- route selection


@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("GET", "/items/42", "GET /items/{id}", {"id": "42"}),
        ("GET", "/items/special", "GET /items/special", {}),
        ("DELETE", "/items/42", "ANY /items/{id}", {"id": "42"}),
        ("GET", "/items/a%20b", "GET /items/{id}", {"id": "a b"}),
        ("GET", "/items/a%2Fb", "GET /items/{id}", {"id": "a/b"}),
        ("GET", "/files/a/b/c.txt", "GET /files/{path+}", {"path": "a/b/c.txt"}),
        ("GET", "/files", DEFAULT_ROUTE, {}),
        ("POST", "/upload", "POST /upload", {}),
        ("GET", "/upload", DEFAULT_ROUTE, {}),
        ("GET", "/items/42/extra", DEFAULT_ROUTE, {}),
        ("GET", "/items/", DEFAULT_ROUTE, {}),
        ("GET", "/", DEFAULT_ROUTE, {}),
        ("HEAD", "/items/42", "ANY /items/{id}", {"id": "42"}),
        ("HEAD", "/items/special", "ANY /items/{id}", {"id": "special"}),
        ("HEAD", "/other", DEFAULT_ROUTE, {}),
        ("HEAD", "/files/a.txt", DEFAULT_ROUTE, {}),
    ],
)
def test_the_most_specific_route_wins_and_default_is_last(
    template: SamTemplate, method: str, path: str, route_key: str, parameters: dict[str, str]
) -> None:
    match = TemplateRoutes(template.routes).match(method, path)

    assert match is not None
    assert (match.route.route_key, match.path_parameters) == (route_key, parameters)


def test_without_a_default_route_an_unmatched_path_has_no_route(template: SamTemplate) -> None:
    table = TemplateRoutes(r for r in template.routes if r.path != DEFAULT_ROUTE)

    assert table.match("GET", "/nowhere") is None


# ---- the event over real HTTP


def test_a_request_becomes_a_payload_v2_event(gateway: LocalGateway) -> None:
    result = echoed(
        gateway,
        "GET",
        "/items/a%20b?tag=1&tag=2&q=x%20y&empty=",
        headers=[("X-Dup", "one"), ("X-Dup", "two"), ("Cookie", "c1=v1; c2=v2"), ("User-Agent", "spec/1.0")],
    )
    event = result["event"]

    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "tag=1&tag=2&q=x%20y&empty="
    assert event["queryStringParameters"] == {"tag": "1,2", "q": "x y", "empty": ""}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-dup"] == "one,two"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event

    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/items/a%20b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "spec/1.0",
    }
    assert context["routeKey"] == "GET /items/{id}"
    assert context["stage"] == "$default"
    assert (context["accountId"], context["apiId"]) == ("123456789012", "local")
    assert context["domainName"] == "127.0.0.1"
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["time"])
    assert isinstance(context["timeEpoch"], int)
    assert context["requestId"]


def test_the_handler_gets_a_lambda_context_and_its_template_environment(gateway: LocalGateway) -> None:
    result = echoed(gateway, "GET", "/items/1")

    assert result["context"]["function_name"] == "EchoFunction"
    assert result["context"]["memory_limit_in_mb"] == 256
    assert result["context"]["invoked_function_arn"].endswith(":function:EchoFunction")
    assert 0 < result["context"]["remaining_ms"] <= 5000
    assert result["env"]["GW_GREETING"] == "hello"
    assert result["env"]["GW_BUCKET"] == "local-uploads"
    assert "GW_UNRESOLVED" not in result["env"]


def test_the_handler_module_is_imported_once(gateway: LocalGateway) -> None:
    first = echoed(gateway, "GET", "/items/1")
    second = echoed(gateway, "GET", "/items/2")

    assert first["imports"] == second["imports"] == 1
    assert first["context"]["aws_request_id"] != second["context"]["aws_request_id"]


def test_a_json_body_is_passed_as_text(gateway: LocalGateway) -> None:
    body = json.dumps({"inputs": [1, 2]}).encode()

    event = echoed(gateway, "POST", "/upload", body=body, headers=[("Content-Type", "application/json")])[
        "event"
    ]

    assert (event["body"], event["isBase64Encoded"]) == (body.decode(), False)


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "image/png"])
def test_a_binary_body_is_base64_encoded(gateway: LocalGateway, content_type: str | None) -> None:
    body = b"\x00\xff\x10binary"
    headers = [("Content-Type", content_type)] if content_type else []

    event = echoed(gateway, "POST", "/upload", body=body, headers=headers)["event"]

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_a_chunked_body_is_read_whole(gateway: LocalGateway) -> None:
    chunks = [b'{"a": ', b"1}"]

    event = echoed(
        gateway,
        "POST",
        "/upload",
        body=iter(chunks),
        headers=[("Content-Type", "application/json")],
        chunked=True,
    )["event"]

    assert event["body"] == '{"a": 1}'


def test_an_unmatched_path_goes_to_the_default_route(gateway: LocalGateway) -> None:
    event = echoed(gateway, "PATCH", "/not/declared")["event"]

    assert event["routeKey"] == "$default"
    assert event["requestContext"]["routeKey"] == "$default"
    assert "pathParameters" not in event


def test_each_route_reaches_its_own_function_with_its_own_modules(gateway: LocalGateway) -> None:
    echo = echoed(gateway, "GET", "/items/1")
    status, _, body = request(gateway, "GET", "/other")

    assert echo["who"] == "echo"
    assert (status, body) == (200, b"other:GET /other")


# ---- responses


def test_a_plain_dict_becomes_a_200_json_response(gateway: LocalGateway) -> None:
    status, headers, body = request(gateway, "GET", "/shaped/plain")

    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"hello": "world"}


def test_a_base64_response_is_decoded(gateway: LocalGateway) -> None:
    status, headers, body = request(gateway, "GET", "/shaped/binary")

    assert (status, headers["Content-Type"], body) == (200, "image/png", b"\x89PNG\x00\xff")


def test_cookies_and_multi_value_headers_are_sent(gateway: LocalGateway) -> None:
    status, headers, body = request(gateway, "GET", "/shaped/cookies")

    assert (status, body) == (201, b"")
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2; Path=/"]
    assert headers.get_all("X-Multi") == ["one", "two"]
    assert headers["X-Flag"] == "true"
    assert headers["Apigw-Requestid"]


@pytest.mark.parametrize("kind", ["boom", "malformed"])
def test_a_failing_handler_is_a_gateway_500(
    gateway: LocalGateway, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="maas.local.gateway"):
        status, headers, body = request(gateway, "GET", f"/shaped/{kind}")

    assert status == 500
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "Internal Server Error"}
    assert any(record.exc_info for record in caplog.records)


def test_a_body_over_the_limit_is_a_413(gateway: LocalGateway) -> None:
    status, _, body = request(gateway, "POST", "/upload", body=b"x" * 5000)

    assert status == 413
    assert json.loads(body) == {
        "message": "Request Entity Too Large",
        "error": "body: expected at most 4096 bytes, got a Content-Length of 5000",
    }


def test_the_default_limit_is_api_gateways_10_mb() -> None:
    assert MAX_BODY_BYTES == 10 * 1024 * 1024


def test_without_a_default_route_the_gateway_answers_404(project: Path, template: SamTemplate) -> None:
    routes = [r for r in template.routes if r.path != DEFAULT_ROUTE]

    with LocalGateway(routes, root=project, port=0) as gateway:
        status, headers, body = request(gateway, "GET", "/nowhere")

    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "Not Found"}


def test_stopping_restores_the_environment(
    project: Path, template: SamTemplate, resolver: IntrinsicResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_SHARED", "before")
    monkeypatch.delenv("GW_GREETING", raising=False)
    gateway = LocalGateway(template.routes, root=project, port=0, resolver=resolver)

    gateway.start()
    assert (os.environ["GW_SHARED"], os.environ["GW_GREETING"]) == ("from-function", "hello")
    gateway.stop()

    assert os.environ["GW_SHARED"] == "before"
    assert "GW_GREETING" not in os.environ


def test_a_missing_handler_file_is_a_500_not_a_crash(tmp_path: Path, template: SamTemplate) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    with LocalGateway(template.routes, root=empty, port=0) as gateway:
        status, _, body = request(gateway, "GET", "/other")

    assert status == 500
    assert json.loads(body) == {"message": "Internal Server Error"}
