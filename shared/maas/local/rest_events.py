"""The payload-1.0 event a REST API sends a Lambda proxy integration, for the local streaming routes.

A streaming REST API route (responseTransferMode STREAM) hands its function the same event a buffered REST
proxy integration does, so a function that streams here reads the dict it reads on AWS: header names as
the client wrote them, the last value of a repeated header or query parameter in `headers` and
`queryStringParameters` and every value in their multiValue twins, absent maps as null, the caller's
SigV4 identity in requestContext.identity. The local gateway has no stage prefix in its URLs, so `path`
and requestContext.path are the same.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from maas.local.http_events import ApiContext, clf_time
from maas.local.http_server import IncomingRequest
from maas.local.template_routes import RouteMatch

# requestContext.identity as REST API writes it for an unsigned caller; SigV4 fills the IAM fields.
_ANONYMOUS_IDENTITY: dict[str, Any] = {
    "accessKey": None,
    "accountId": None,
    "caller": None,
    "cognitoAuthenticationProvider": None,
    "cognitoAuthenticationType": None,
    "cognitoIdentityId": None,
    "cognitoIdentityPoolId": None,
    "principalOrgId": None,
    "user": None,
    "userArn": None,
}


def rest_api_event(
    request: IncomingRequest,
    match: RouteMatch,
    *,
    caller: Mapping[str, Any] | None,
    api: ApiContext,
    request_id: str,
    now: datetime,
) -> dict[str, Any]:
    """The REST API proxy event for `request` on `match`'s route. `caller` is what the gateway's
    authorization established, as it hands it to HTTP API events ({"iam": ...} for SigV4); None on an
    open route."""
    split = urlsplit(request.target)
    path = split.path or "/"
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    host = _header(headers, "host") or f"{api.api_id}.execute-api.localhost"
    domain_name = host.split(":")[0]
    for name, value in (
        ("X-Forwarded-For", request.source_ip),
        ("X-Forwarded-Proto", "http"),
        ("X-Amzn-Trace-Id", f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}"),
    ):
        if _header(headers, name) is None:
            headers[name] = value
            multi_headers[name] = [value]
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = value
        multi_query.setdefault(name, []).append(value)
    identity = {
        **_ANONYMOUS_IDENTITY,
        "sourceIp": request.source_ip,
        "userAgent": _header(headers, "user-agent"),
    }
    iam = (caller or {}).get("iam")
    if isinstance(iam, Mapping):
        identity.update(
            accessKey=iam.get("accessKey"),
            accountId=iam.get("accountId"),
            caller=iam.get("callerId"),
            principalOrgId=iam.get("principalOrgId"),
            user=iam.get("userId"),
            userArn=iam.get("userArn"),
        )
    context: dict[str, Any] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".")[0],
        "extendedRequestId": request_id,
        "httpMethod": request.method,
        "identity": identity,
        "path": path,
        "protocol": request.protocol,
        "requestId": request_id,
        "requestTime": clf_time(now),
        "requestTimeEpoch": int(now.timestamp() * 1000),
        "resourceId": None,
        "resourcePath": match.route.path,
        "stage": api.stage,
    }
    other_claims = {k: v for k, v in (caller or {}).items() if k != "iam"}
    if other_claims:
        context["authorizer"] = other_claims
    body, encoded = _event_body(request.body)
    return {
        "resource": match.route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(match.path_parameters) or None,
        "stageVariables": None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": encoded,
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _event_body(body: bytes) -> tuple[str | None, bool]:
    """A REST API without binary media types passes the body as text; bytes that are not UTF-8 travel
    base64-encoded here, so the function sees exactly what arrived."""
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True
