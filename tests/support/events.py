"""Events for calling a handler directly: the real event JSON files under tests/events, and API Gateway HTTP
API (payload 2.0) events built by maas.local's own builder and routed by template.yaml's routes, so a test
sends its handler the very event the deployed API (and `make serve`) would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from maas.local import TemplateRoutes, http_api_event, load_template

# The builder's request and API types are not exported by maas.local; this is their one import in tests/.
from maas.local.http_events import ApiContext
from maas.local.http_server import IncomingRequest
from tests.support.paths import EVENTS, TEMPLATE

JSON = "application/json"
# What a request from curl reaches a deployed (HTTPS) API with; the builder adds trace id and forwarded-for.
CLIENT_HEADERS: Mapping[str, str] = {
    "accept": "*/*",
    "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
    "user-agent": "curl/8.5.0",
    "x-forwarded-port": "443",
    "x-forwarded-proto": "https",
}
SOURCE_IP = "203.0.113.7"
API = ApiContext(api_id="a1b2c3d4e5", account_id="123456789012")


def load_event(name: str) -> dict[str, Any]:
    """A real event from tests/events, fresh each call so a test may change it."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@cache
def _template_routes() -> TemplateRoutes:
    return TemplateRoutes(load_template(TEMPLATE).routes)


def http_event(
    method: str,
    target: str,
    body: str | bytes | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The event HTTP API sends for `method target` (a path with an optional query string).

    `headers` are the client's, beside curl's; the body travels as text or base64-encoded as API Gateway
    decides, by its content type. `authorizer` is what the route's authorizer established, e.g.
    {"jwt": {...}}.
    """
    content = body.encode() if isinstance(body, str) else (body or b"")
    request_headers = {**CLIENT_HEADERS, **{name.lower(): value for name, value in (headers or {}).items()}}
    request = IncomingRequest(
        method=method,
        target=target,
        headers=list(request_headers.items()),
        body=content,
        source_ip=SOURCE_IP,
    )
    match = _template_routes().match(method, urlsplit(target).path or "/")
    assert match is not None, f"template.yaml routes no {method} {target}, not even to $default"
    return http_api_event(
        request, match, API, request_id=uuid.uuid4().hex[:16], now=datetime.now(UTC), authorizer=authorizer
    )


def json_event(
    method: str, target: str, document: Any, *, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An HTTP API event whose body is `document` as JSON."""
    return http_event(method, target, json.dumps(document), headers={"content-type": JSON, **(headers or {})})
