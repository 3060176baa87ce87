"""Real HTTP requests, for tests that call the local stack over the network as a client would, and the JSON
answers of the stand-in servers tests run (an OIDC issuer, the Lambda Runtime API)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


HttpCall = Callable[..., HttpResult]


def send(method: str, url: str, body: bytes | None = None, content_type: str | None = None) -> HttpResult:
    """One real HTTP request; error statuses are results, not exceptions."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResult(error.code, dict(error.headers), error.read())


def answer_json(handler: BaseHTTPRequestHandler, status: int, document: Any) -> None:
    """A stand-in server's JSON answer, with its length, so a kept-alive client reads exactly it."""
    body = json.dumps(document).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
