"""The generate function's transport: OpenAI's error shape under /openai/, event streams answered whole or
left to the streaming transport, an error after a stream's first byte sent as its last event, and the OpenAPI
document describing the generate routes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from maas.api import v2_inference
from maas.api.generate_routes import triton_error_event
from maas.api.generation_http import (
    MODEL_VERSION_HEADER,
    ROUTING_KEY_HEADER,
    PendingStream,
    StreamedAnswers,
    as_http_stream,
)
from maas.api.http_stream import SSE_DONE
from maas.api.openai_routes import in_openai_shape, openai_error, openai_error_event
from maas.api.openapi import openapi_document
from maas.errors import InvalidInput, PayloadTooLarge, Unavailable
from maas.observability import metrics


@pytest.fixture(autouse=True)
def no_metrics_left_over() -> Iterator[None]:
    """Powertools keeps unflushed metrics process-wide: an earlier test's would be flushed with ours."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.mark.parametrize(
    ("status", "message", "param", "error_type", "code"),
    [
        (
            400,
            "temperature: expected a number from 0 to 2, got 3",
            "temperature",
            "invalid_request_error",
            None,
        ),
        (
            400,
            "messages[2].content[0].type: expected text",
            "messages[2].content[0].type",
            "invalid_request_error",
            None,
        ),
        (400, "request body: expected JSON, got invalid JSON", None, "invalid_request_error", None),
        (413, "body: expected at most 256 bytes", None, "invalid_request_error", None),
        (415, "Content-Type: expected application/json", None, "invalid_request_error", None),
        (
            404,
            "model 'x': not found (no published version)",
            None,
            "invalid_request_error",
            "model_not_found",
        ),
        (404, "route: expected an OpenAI-compatible route", None, "invalid_request_error", None),
        (503, "model storage unavailable", None, "server_error", None),
        (500, "internal error; see the function's logs", None, "server_error", None),
    ],
)
def test_openai_errors_name_the_field_a_message_starts_with(
    status: int, message: str, param: str | None, error_type: str, code: str | None
) -> None:
    error = openai_error(status, message).error

    assert (error.message, error.param, error.type, error.code) == (message, param, error_type, code)


def test_only_error_answers_under_openai_are_reshaped() -> None:
    error = {"statusCode": 400, "headers": {}, "body": json.dumps({"error": "n: expected 1 to 4 choices"})}
    fine = {"statusCode": 200, "headers": {}, "body": json.dumps({"error": "not an error answer"})}

    reshaped = in_openai_shape({"rawPath": "/openai/v1/completions"}, error)

    assert json.loads(reshaped["body"])["error"]["param"] == "n"
    assert in_openai_shape({"rawPath": "/v2/models/m/generate"}, error) is error
    assert in_openai_shape({"path": "/openai/v1/models"}, fine) is fine


def events_then(failure: Exception) -> Iterator[bytes]:
    yield b"data: 1\n\n"
    raise failure


def test_an_event_stream_without_a_streaming_transport_is_answered_whole() -> None:
    answers = StreamedAnswers(max_whole_bytes=1024)

    response = answers.sse(
        iter([b"data: 1\n\n", SSE_DONE]), openai_error_event, {"x-maas-model-version": "3"}
    )

    assert response.status_code == 200
    assert response.body == "data: 1\n\ndata: [DONE]\n\n"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["x-maas-model-version"] == "3"
    # Generated there and then: an error anywhere is still an ordinary error status.
    with pytest.raises(Unavailable):
        answers.sse(events_then(Unavailable("storage")), openai_error_event)
    with pytest.raises(
        PayloadTooLarge, match=r"^response: expected at most 8 bytes \(MAAS_MAX_RESPONSE_BYTES"
    ):
        StreamedAnswers(max_whole_bytes=8).sse(iter([b"data: 123456789\n\n"]), openai_error_event)


@pytest.mark.parametrize(
    ("failure", "error_event", "last"),
    [
        (
            InvalidInput("stop: no"),
            openai_error_event,
            {
                "error": {
                    "message": "stop: no",
                    "type": "invalid_request_error",
                    "param": "stop",
                    "code": None,
                }
            },
        ),
        (
            RuntimeError("secret payload text"),
            openai_error_event,
            {
                "error": {
                    "message": "internal error; see the function's logs",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (Unavailable("storage"), triton_error_event, {"error": "storage"}),
    ],
)
def test_a_stream_that_fails_after_its_first_byte_ends_with_an_error_event(
    failure: Exception, error_event: Any, last: dict[str, Any]
) -> None:
    answers = StreamedAnswers(max_whole_bytes=1024)

    with answers.streaming() as pending:
        response = answers.sse(events_then(failure), error_event)
    assert pending.chunks is not None
    chunks = list(pending.chunks)

    assert response.status_code == 200
    assert response.body == ""
    assert chunks[0] == b"data: 1\n\n"
    assert json.loads(chunks[1].removeprefix(b"data: ")) == last
    assert len(chunks) == 2
    # The stream flushed its own metrics: the edge flushed the invocation's before the first event.
    assert not metrics.metric_set


def test_a_whole_answer_becomes_a_stream_of_its_body() -> None:
    response = {
        "statusCode": 404,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Allow": ["GET", "HEAD"]},
        "body": base64.b64encode(b'{"error":"x"}').decode(),
        "isBase64Encoded": True,
    }

    stream = as_http_stream(response, PendingStream())

    assert stream.status == 404
    assert stream.headers == {"Content-Type": "application/json", "Allow": "GET, HEAD"}
    assert list(stream.chunks) == [b'{"error":"x"}']
    assert list(as_http_stream({"statusCode": 204, "body": ""}, PendingStream()).chunks) == []


def test_the_openapi_document_describes_the_generate_routes() -> None:
    paths = openapi_document()["paths"]

    chat = paths["/openai/v1/chat/completions"]["post"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIErrorResponse"
    }
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    retrieve = paths["/openai/v1/models/{model}"]["get"]
    assert [parameter["name"] for parameter in retrieve["parameters"]] == ["model"]
    assert "head" in paths["/openai/v1/models"]
    stream = paths["/v2/models/{name}/versions/{version}/generate_stream"]["post"]
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}
    assert stream["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert not any(path.startswith("/registry") for path in paths)


def test_the_generate_routes_speak_the_v2_routes_headers() -> None:
    assert (MODEL_VERSION_HEADER, ROUTING_KEY_HEADER) == (
        v2_inference.MODEL_VERSION_HEADER,
        v2_inference.ROUTING_KEY_HEADER,
    )
