"""Which routes stream, read from template.yaml's REST API integrations: exactly those API Gateway would
stream (responseTransferMode STREAM with the response-streaming-invocations URI), and a half-configured
integration is a template error rather than a route that streams locally and buffers on AWS."""

from __future__ import annotations

import pytest

from maas.local.cloudformation import TemplateError
from maas.local.template_reader import parse_template
from maas.local.template_routes import TemplateRoutes

STREAMING = "/response-streaming-invocations"
BUFFERED = "/invocations"
BUFFERED_URI = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"


def template(
    *, mode: str = "STREAM", suffix: str = STREAMING, kind: str = "aws_proxy", target: str = "Fn"
) -> str:
    functions = "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions"
    uri = f"{functions}/${{{target}.Arn}}{suffix}"
    return f"""\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.lambda_handler
      Events:
        Chat: {{Type: HttpApi, Properties: {{Path: /chat, Method: POST}}}}
        Models: {{Type: HttpApi, Properties: {{Path: /models, Method: GET}}}}
  Streams:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
      DefinitionBody:
        paths:
          /chat:
            post:
              x-amazon-apigateway-integration:
                type: {kind}
                httpMethod: POST
                uri: !Sub "{uri}"
                responseTransferMode: {mode}
          /plain:
            get:
              x-amazon-apigateway-integration:
                type: aws_proxy
                httpMethod: POST
                uri: !Sub "{BUFFERED_URI}"
"""


def test_a_stream_integration_becomes_a_streaming_route_that_wins_over_its_http_api_twin() -> None:
    routes = parse_template(template()).routes
    streaming = [r for r in routes if r.streaming]

    assert [(r.method, r.path, r.function_id, r.api_id) for r in streaming] == [
        ("POST", "/chat", "Fn", "Streams")
    ]
    assert TemplateRoutes(routes).match("POST", "/chat").route.streaming  # type: ignore[union-attr]
    assert not TemplateRoutes(routes).match("GET", "/models").route.streaming  # type: ignore[union-attr]


def test_buffered_rest_integrations_are_not_emulated() -> None:
    routes = parse_template(template()).routes
    assert "/plain" not in {r.path for r in routes}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"suffix": BUFFERED}, "together with a URI ending in /response-streaming-invocations"),
        ({"mode": "BUFFERED"}, "together with a URI ending in /response-streaming-invocations"),
        ({"kind": "aws"}, "of type aws_proxy"),
        ({"target": "Elsewhere"}, "one template function"),
    ],
)
def test_a_half_configured_streaming_integration_is_a_template_error(
    options: dict[str, str], expected: str
) -> None:
    with pytest.raises(TemplateError, match=expected):
        parse_template(template(**options))
