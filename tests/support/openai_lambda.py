"""The openai SDK talking to a function's lambda_handler, and Server-Sent Events read back.

Each request the SDK makes becomes the HTTP API event API Gateway would send for it
(tests.support.events.http_event), and the handler's answer becomes the HTTP response, so the SDK parses
the function's real bodies, event streams included, without an HTTP server in between.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai

from tests.support.events import CLIENT_HEADERS, http_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# The headers http_event sets itself, which the client's would otherwise duplicate.
_TRANSPORT_HEADERS = {"host", "content-length", "connection"}
DONE = "[DONE]"


def lambda_transport(handler: Handler) -> httpx2.MockTransport:
    def send(request: httpx2.Request) -> httpx2.Response:
        headers = {
            name: value for name, value in request.headers.items() if name.lower() not in _TRANSPORT_HEADERS
        }
        event = http_event(
            request.method, request.url.raw_path.decode("ascii"), request.content, headers=headers
        )
        answer = handler(event, None)
        return httpx2.Response(
            answer["statusCode"], headers=answer.get("headers") or {}, content=answer_body(answer)
        )

    return httpx2.MockTransport(send)


def openai_client(handler: Handler) -> openai.OpenAI:
    """An SDK client whose base_url is the deployed API's /openai/v1, answered by `handler`."""
    return openai.OpenAI(
        base_url=f"https://{CLIENT_HEADERS['host']}/openai/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx2.Client(transport=lambda_transport(handler)),
    )


def answer_body(answer: dict[str, Any]) -> bytes:
    body = answer.get("body") or ""
    return base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()


def sse_data(body: str | bytes) -> list[str]:
    """The `data:` payload of each event of an event stream, in order; a body that is not one fails."""
    text = body.decode() if isinstance(body, bytes) else body
    assert text.endswith("\n\n"), "expected an event stream ending in a blank line"
    data = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: ") and "\n" not in event, f"expected one data line, got {event[:80]!r}"
        data.append(event.removeprefix("data: "))
    return data


def sse_json(body: str | bytes) -> list[dict[str, Any]]:
    """The events' JSON documents, the closing [DONE] left out."""
    return [json.loads(data) for data in sse_data(body) if data != DONE]
