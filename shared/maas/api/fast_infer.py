"""The infer function's fast path: POST /v2/models/{name}[/versions/{version}]/infer and /explain, answered
without the router, for the proxy events the template produces.

An HTTP API (payload 2.0, $default stage), Function URL or REST API (v1) event whose method is exactly POST
and whose path is exactly one of those routes, as the router would match it, is answered here; anything
else (another route or method, a stage in the path, a REST path with a trailing slash, a debug switch
that changes the router's answers) gets None and goes to the router. What happens in between is the
routes' own code (maas.api.v2_inference); only the proxy response dict is built here, as Powertools
builds it for each payload format, so both ways in answer the same dict, error answers included.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.shared.functions import powertools_dev_is_set
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.http_errors import INTERNAL_ERROR_MESSAGE, error_body, log_failure, log_unexpected
from maas.api.v2_inference import BINARY_CONTENT_TYPE, EncodedAnswer, V2Inference
from maas.errors import MaasError
from maas.observability import MetricUnit, metrics
from maas.service.inference import InferenceService

JSON_CONTENT_TYPE = "application/json"
DEFAULT_STAGE = "$default"
# A path parameter as Powertools matches it (its _SAFE_URI and _UNSAFE_URI characters and \w): the router
# and the fast path must agree on which paths are these routes.
_PARAMETER = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_ROUTES = re.compile(
    rf"/v2/models/(?P<name>{_PARAMETER})(?:/versions/(?P<version>{_PARAMETER}))?/(?P<action>infer|explain)"
)
# The payload formats, by the part of the response that carries headers.
HTTP_API, REST_API = "headers", "multiValueHeaders"


class FastInfer:
    def __init__(self, service: InferenceService) -> None:
        self.inference = V2Inference(service)
        # Powertools' debug mode prints events and answers 500s with tracebacks: the router's business.
        self.enabled = not powertools_dev_is_set()

    def answer(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any] | None:
        """The proxy response for an infer or explain request; None for any event the router must answer."""
        recognised = self._recognise(event) if self.enabled else None
        if recognised is None:
            return None
        payload_format, match = recognised
        name, version = match["name"], match["version"]
        remaining_ms = None if context is None else context.get_remaining_time_in_millis
        proxy = BaseProxyEvent(dict(event))
        try:
            if match["action"] == "infer":
                answer = self.inference.infer(proxy, name, version, remaining_ms)
            else:
                answer = self.inference.explain(proxy, name, version, remaining_ms)
            response = _answered(payload_format, answer)
        except MaasError as exc:
            log_failure(exc)
            response = _failed(payload_format, exc.status, exc.message)
        except Exception as exc:  # answered as the router answers it: a logged 500
            log_unexpected(exc)
            response = _failed(payload_format, 500, INTERNAL_ERROR_MESSAGE)
        body = event.get("body")
        if isinstance(body, str):
            metrics.add_metric(name="RequestBytes", unit=MetricUnit.Bytes, value=len(body))
        return response

    @staticmethod
    def _recognise(event: Mapping[str, Any]) -> tuple[str, re.Match[str]] | None:
        context = event.get("requestContext")
        if not isinstance(context, Mapping):
            return None
        if event.get("version") == "2.0" and isinstance(http := context.get("http"), Mapping):
            # Powertools drops a named stage's prefix from rawPath; only $default leaves the path as sent.
            payload_format, method, path = HTTP_API, http.get("method"), event.get("rawPath")
            if context.get("stage") != DEFAULT_STAGE:
                return None
        elif "httpMethod" in event:
            payload_format, method, path = REST_API, event.get("httpMethod"), event.get("path")
        else:
            return None
        if method != "POST" or not isinstance(path, str):
            return None
        match = _ROUTES.fullmatch(path)
        return None if match is None else (payload_format, match)


def _answered(payload_format: str, answer: EncodedAnswer) -> dict[str, Any]:
    if answer.binary:
        body = base64.b64encode(answer.content).decode()
        return _proxy_response(payload_format, 200, body, answer.headers, BINARY_CONTENT_TYPE, encoded=True)
    return _proxy_response(payload_format, 200, answer.content.decode(), answer.headers, JSON_CONTENT_TYPE)


def _failed(payload_format: str, status: int, message: str) -> dict[str, Any]:
    # No Allow header to add: this path serves only POST routes, so the router answers every 405.
    return _proxy_response(payload_format, status, error_body(message), {}, JSON_CONTENT_TYPE)


def _proxy_response(
    payload_format: str,
    status: int,
    body: str,
    headers: dict[str, str],
    content_type: str,
    *,
    encoded: bool = False,
) -> dict[str, Any]:
    """The dict Powertools' resolvers return: payload 2.0 carries headers and cookies, REST multi-value
    headers; Content-Type is added after the route's own headers."""
    headers.setdefault("Content-Type", content_type)
    response: dict[str, Any] = {"statusCode": status, "body": body, "isBase64Encoded": encoded}
    if payload_format == HTTP_API:
        response["headers"] = headers
        response["cookies"] = []
    else:
        response["multiValueHeaders"] = {key: [value] for key, value in headers.items()}
    return response
