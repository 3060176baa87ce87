"""`make serve`'s streaming: a route the template streams (a REST API integration with responseTransferMode
STREAM) reaches the function's stream_handler with a REST proxy event, and its chunks reach the client as
they are produced, over real HTTP/1.1 chunked responses.

The fake function waits on gates the test opens (tests.support.stream_gates), so "the client had chunk 1
before chunk 2 existed" is proven by order, not by a clock."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from maas.local.cloudformation import TemplateError
from maas.local.gateway import LocalGateway
from maas.local.template_reader import load_template, parse_template
from maas.local.template_routes import TemplateRoutes
from tests.support.local_projects import GatewayFactory, gateway_starter, write_project
from tests.support.logs import JsonLogs
from tests.support.stream_gates import GATE_SECONDS, StreamGates, gates_for

STREAMING = "/response-streaming-invocations"
BUFFERED_URI = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/${TalkFunction.Arn}/invocations"


def streaming_template(
    *, mode: str = "STREAM", suffix: str = STREAMING, kind: str = "aws_proxy", target: str = "TalkFunction"
) -> str:
    """The project's template: a function on an HTTP API, and a REST API whose /say/{kind} integration
    streams it (as given) while /plain buffers."""
    functions = "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions"
    return f"""\
Transform: AWS::Serverless-2016-10-31
Parameters:
  DataPlaneAuth: {{Type: String, Default: NONE, AllowedValues: [NONE, AWS_IAM]}}
Conditions:
  DataPlaneIam: !Equals [!Ref DataPlaneAuth, AWS_IAM]
Globals:
  Function: {{Runtime: python3.12, Timeout: 30}}
Resources:
  TalkFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: talk/
      Handler: app.lambda_handler
      Events:
        Say: {{Type: HttpApi, Properties: {{Path: "/say/{{kind}}", Method: POST}}}}
        Models: {{Type: HttpApi, Properties: {{Path: /models, Method: GET}}}}
  StreamApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
      DefinitionBody:
        openapi: "3.0.1"
        paths:
          "/say/{{kind}}":
            post:
              security: !If [DataPlaneIam, [{{sigv4: []}}], []]
              x-amazon-apigateway-integration:
                type: {kind}
                httpMethod: POST
                uri: !Sub "{functions}/${{{target}.Arn}}{suffix}"
                responseTransferMode: {mode}
          /plain:
            get:
              x-amazon-apigateway-integration:
                {{type: aws_proxy, httpMethod: POST, uri: !Sub "{BUFFERED_URI}"}}
        components:
          securitySchemes:
            sigv4: {{type: apiKey, name: Authorization, in: header, x-amazon-apigateway-authtype: awsSigv4}}
"""


TALK_APP = """\
import json

from maas.api.http_stream import SSE_DONE, HttpStream, sse_event
from tests.support.stream_gates import gates_of

GATES = gates_of(__file__)


def lambda_handler(event, context):
    body = json.dumps({"handler": "lambda_handler", "version": event.get("version")})
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}


def stream_handler(event, context):
    GATES.events.append(event)
    kind = event["pathParameters"]["kind"]
    if kind == "bad-status":
        return HttpStream(99, {}, iter([b"never"]))
    if kind == "raises":
        raise KeyError("messages")
    headers = {"Content-Type": "text/event-stream", "X-Kind": kind}
    return HttpStream(200, headers, _chunks(kind, event["body"]))


def _chunks(kind, body):
    try:
        yield sse_event({"n": 1})
        if kind == "fails":
            raise RuntimeError(f"the request was {body}")
        GATES.wait_to_produce_second()
        yield b""
        yield sse_event({"n": 2})
        while kind == "endless":
            yield sse_event({"n": "more"})
        yield SSE_DONE
    finally:
        GATES.closed.set()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, {"template.yaml": streaming_template(), "talk/app.py": TALK_APP})


@pytest.fixture
def gates(project: Path) -> StreamGates:
    return gates_for(project)


@pytest.fixture
def start(project: Path) -> Iterator[GatewayFactory]:
    with gateway_starter(project) as starter:
        yield starter


@pytest.fixture
def gateway(project: Path, start: GatewayFactory) -> LocalGateway:
    return start(load_template(project / "template.yaml"))


def connect(gateway: LocalGateway) -> http.client.HTTPConnection:
    address = urlsplit(gateway.url)
    return http.client.HTTPConnection(address.hostname or "", address.port, timeout=GATE_SECONDS)


def post(
    connection: http.client.HTTPConnection, path: str, body: bytes = b'{"stream": true}'
) -> http.client.HTTPResponse:
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    return connection.getresponse()


def exchange(
    gateway: LocalGateway, *requests: tuple[str, str], body: bytes = b'{"stream": true}'
) -> list[tuple[int, bytes]]:
    """Each (method, path) in turn on one kept-alive connection, read whole: [(status, body), ...]."""
    connection = connect(gateway)
    try:
        answers = []
        for method, path in requests:
            response = post(connection, path, body) if method == "POST" else _get(connection, path)
            answers.append((response.status, response.read()))
        return answers
    finally:
        connection.close()


def _get(connection: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    connection.request("GET", path)
    return connection.getresponse()


def test_the_client_reads_each_chunk_before_the_next_is_produced(
    gateway: LocalGateway, gates: StreamGates
) -> None:
    connection = connect(gateway)
    try:
        response = post(connection, "/say/gated")
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.headers["Content-Type"] == "text/event-stream"

        first = response.read1()
        assert first == b'data: {"n":1}\n\n'
        assert not gates.second_produced.is_set()

        gates.open_second.set()
        rest = response.read()
    finally:
        connection.close()
    assert rest == b'data: {"n":2}\n\ndata: [DONE]\n\n'
    assert gates.closed.is_set()


def test_a_streamed_route_gets_the_rest_api_event_and_other_routes_the_lambda_handler(
    gateway: LocalGateway, gates: StreamGates
) -> None:
    gates.open_second.set()
    _, (_, buffered) = exchange(gateway, ("POST", "/say/gated?x=1&x=2"), ("GET", "/models"))

    (event,) = gates.events
    assert "version" not in event
    assert event["httpMethod"] == "POST"
    assert event["resource"] == "/say/{kind}"
    assert event["path"] == "/say/gated"
    assert event["pathParameters"] == {"kind": "gated"}
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["headers"]["Content-Type"] == "application/json"
    assert json.loads(event["body"]) == {"stream": True}
    assert event["requestContext"]["resourcePath"] == "/say/{kind}"
    assert json.loads(buffered) == {"handler": "lambda_handler", "version": "2.0"}


def test_a_client_that_leaves_stops_the_producer_and_frees_the_function(
    gateway: LocalGateway, gates: StreamGates
) -> None:
    connection = connect(gateway)
    response = post(connection, "/say/endless")
    assert response.read1() == b'data: {"n":1}\n\n'
    connection.close()
    response.close()

    gates.open_second.set()
    assert gates.closed.wait(GATE_SECONDS), "the generator was never closed"
    assert exchange(gateway, ("GET", "/models"))[0][0] == 200


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_sse_error_event(
    gateway: LocalGateway, gates: StreamGates, json_logs: JsonLogs
) -> None:
    ((status, body),) = exchange(gateway, ("POST", "/say/fails"), body=b'{"prompt": "7f3a private words"}')

    assert status == 200
    first, error, end = body.split(b"\n\n")
    assert first == b'data: {"n":1}'
    assert json.loads(error.removeprefix(b"data: ")) == {
        "error": {
            "message": "internal error; see the function's logs",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert end == b""
    assert gates.closed.is_set()
    assert "RuntimeError" in json_logs.text
    assert "7f3a" not in json_logs.text


def test_a_stream_with_an_impossible_status_is_a_500_and_frees_the_function(
    gateway: LocalGateway, gates: StreamGates
) -> None:
    answers = exchange(gateway, ("POST", "/say/bad-status"), ("GET", "/models"))
    assert [status for status, _ in answers] == [500, 200]


def test_a_stream_handler_that_raises_before_answering_gets_the_runtimes_500(
    gateway: LocalGateway, gates: StreamGates
) -> None:
    ((status, body),) = exchange(gateway, ("POST", "/say/raises"))

    assert status == 500
    assert json.loads(body)["error"]["message"] == "internal error; see the function's logs"


def test_an_http_1_0_client_gets_the_body_unframed_until_the_connection_closes(
    gateway: LocalGateway, gates: StreamGates
) -> None:
    gates.open_second.set()
    address = urlsplit(gateway.url)
    with socket.create_connection((address.hostname or "", address.port or 0), timeout=GATE_SECONDS) as raw:
        raw.sendall(b"POST /say/gated HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        received = b""
        while chunk := raw.recv(65536):
            received += chunk

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")  # the server's own version, as RFC 9110 has it
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'


def test_the_streaming_route_keeps_its_own_authorization(
    project: Path, start: GatewayFactory, gates: StreamGates
) -> None:
    gateway = start(load_template(project / "template.yaml", {"DataPlaneAuth": "AWS_IAM"}))
    answers = exchange(gateway, ("POST", "/say/gated"), ("GET", "/models"))

    assert [status for status, _ in answers] == [403, 200]
    assert gates.events == []


# ---- which routes stream, as template.yaml says


def test_a_stream_integration_becomes_a_streaming_route_that_wins_over_its_http_api_twin() -> None:
    routes = parse_template(streaming_template()).routes
    streaming = [(r.method, r.path, r.function_id, r.api_id) for r in routes if r.streaming]

    assert streaming == [("POST", "/say/{kind}", "TalkFunction", "StreamApi")]
    table = TemplateRoutes(routes)
    assert table.match("POST", "/say/x").route.streaming  # type: ignore[union-attr]
    assert not table.match("GET", "/models").route.streaming  # type: ignore[union-attr]
    assert "/plain" not in {r.path for r in routes}  # buffered REST integrations are not emulated


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"suffix": "/invocations"}, "together with a URI ending in /response-streaming-invocations"),
        ({"mode": "BUFFERED"}, "together with a URI ending in /response-streaming-invocations"),
        ({"kind": "aws"}, "of type aws_proxy"),
        ({"target": "Elsewhere"}, "one template function"),
    ],
)
def test_a_half_configured_streaming_integration_is_a_template_error(
    options: dict[str, str], expected: str
) -> None:
    with pytest.raises(TemplateError, match=expected):
        parse_template(streaming_template(**options))
