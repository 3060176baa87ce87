"""The payload-2.0 event an HTTP API sends a Lambda proxy integration, and the function's answer mapped back.

Both directions follow API Gateway's documented mapping, so a function that works here sees the same
dicts in AWS: headers lower-cased and repeats comma-joined, cookies apart, textual bodies as text and
the rest base64; a result with statusCode is the response, any other JSON value a 200 JSON body.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from maas.local.http_server import GatewayResponse, IncomingRequest
from maas.local.sigv4 import LOCAL_ACCOUNT_ID
from maas.local.template_routes import RouteMatch

LOCAL_API_ID = "local"

_TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/ecmascript",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/x-ndjson",
    }
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Which API and stage the event says it came through."""

    api_id: str = LOCAL_API_ID
    account_id: str = LOCAL_ACCOUNT_ID
    stage: str = "$default"


def http_api_event(
    request: IncomingRequest,
    match: RouteMatch,
    api: ApiContext,
    *,
    request_id: str,
    now: datetime,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload-format-2.0 event HTTP API sends to a Lambda proxy integration; `authorizer` is what the
    route's authorizer established ({"iam": ...} or {"jwt": ...}), absent on routes without one."""
    split = urlsplit(request.target)
    raw_path = split.path or "/"
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    domain_name = headers.get("host", f"{api.api_id}.execute-api.localhost").split(":")[0]
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}")

    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route.route_key,
        "rawPath": raw_path,
        "rawQueryString": split.query,
        "headers": headers,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".")[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": match.route.route_key,
        "stage": api.stage,
        "time": clf_time(now),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = dict(authorizer)
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    if request.body:
        body, encoded = _event_body(request.body, headers.get("content-type", ""))
        event["body"] = body
        event["isBase64Encoded"] = encoded
    else:
        event["isBase64Encoded"] = False
    return event


def _event_body(body: bytes, content_type: str) -> tuple[str, bool]:
    """HTTP API passes textual media types as text and base64-encodes everything else."""
    media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    textual = (
        media_type.startswith("text/")
        or media_type in _TEXT_MEDIA_TYPES
        or media_type.endswith(("+json", "+xml"))
    )
    if textual:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def clf_time(now: datetime) -> str:
    """requestContext.time as API Gateway writes it: 04/Mar/2020:19:15:17 +0000."""
    utc = now.astimezone(UTC)
    return f"{utc.day:02d}/{_MONTHS[utc.month - 1]}/{utc.year}:{utc:%H:%M:%S} +0000"


class MalformedLambdaResponseError(ValueError):
    """The function returned something HTTP API cannot turn into a response (it answers 500)."""


def http_response_from_lambda(result: Any) -> GatewayResponse:
    """Payload 2.0 response mapping: a dict with statusCode is taken as the response; any other JSON
    value becomes a 200 application/json body, as HTTP API infers."""
    try:
        result = json.loads(json.dumps(result))
    except (TypeError, ValueError) as exc:
        raise MalformedLambdaResponseError(f"the result is not JSON-serializable: {exc}") from None
    if not (isinstance(result, dict) and "statusCode" in result):
        return GatewayResponse(200, [("Content-Type", "application/json")], json.dumps(result).encode())

    status = result["statusCode"]
    # 1xx is interim in HTTP: as a final answer the client would wait for another one for ever.
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise MalformedLambdaResponseError(f"statusCode: expected an integer 200-599, got {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((name, _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, _header_value(v)) for v in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])

    body = result.get("body")
    if body is None:
        return GatewayResponse(status, headers, b"")
    if not isinstance(body, str):
        raise MalformedLambdaResponseError(f"body: expected a string, got {type(body).__name__}")
    if result.get("isBase64Encoded"):
        try:
            return GatewayResponse(status, headers, base64.b64decode(body, validate=True))
        except binascii.Error:
            raise MalformedLambdaResponseError(
                "body: isBase64Encoded is true but body is not base64"
            ) from None
    return GatewayResponse(status, headers, body.encode("utf-8"))


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
