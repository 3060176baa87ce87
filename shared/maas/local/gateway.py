"""An API Gateway HTTP API emulator: real payload-2.0 events, handlers called in-process.

It routes, builds events and maps responses the way HTTP API does, so a function that works here
sees the same dicts in AWS. The parts it stands on: maas.local.http_server reads and frames the
requests (strict HTTP/1.1, a read deadline, a connection limit) and maas.local.lambdas hosts
the functions (one execution environment each, their template environment applied). Decisions worth
knowing:

- The HTTP server is threaded, so a slow function never blocks another one.
- A gateway given no `LocalFunctions` builds its routes' functions and applies their environment
  itself while it is bound; one given a shared `LocalFunctions` leaves that to its owner.
- Each route's authorization (from template.yaml) is enforced before its function is invoked, with
  API Gateway's answers: AWS_IAM needs a SigV4 signature by a key the local process holds (403
  otherwise, see maas.local.sigv4), JWT a valid bearer token of the configured issuer (401, see
  maas.local.jwt_authorizer). The event then carries requestContext.authorizer.iam or .jwt.
- A body over the cap (MAX_BODY_BYTES, 10 MB, API Gateway's) is refused with 413 before it is read.
- HEAD routes like HTTP API does: to HEAD and ANY routes (then `$default`), never to a GET route. The
  server sends no body with a HEAD answer, whatever the function returned.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from maas.local.cloudformation import DEFAULT_REGION, IntrinsicResolver
from maas.local.http_server import (
    MAX_CONNECTIONS,
    READ_TIMEOUT_SECONDS,
    GatewayResponse,
    IncomingRequest,
    StrictHttpServer,
    gateway_message,
    loggable_path,
)
from maas.local.lambdas import LocalFunctions
from maas.local.sam import ANY_METHOD, DEFAULT_ROUTE, Route, RouteAuthorization
from maas.local.sigv4 import (
    LOCAL_ACCOUNT_ID,
    SERVICE,
    LocalCredentials,
    SignatureRejectedError,
    credentials_from_environment,
    verify_sigv4,
)

if TYPE_CHECKING:
    from maas.local.jwt_authorizer import JwtAuthorizer

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
LOCAL_API_ID = "local"
SHUTDOWN_POLL_SECONDS = 0.05

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
_LITERAL, _VARIABLE, _GREEDY = 0, 1, 2


# ---- routing


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: int
    text: str


@dataclass(frozen=True, slots=True)
class _CompiledRoute:
    route: Route
    segments: tuple[_Segment, ...]

    @property
    def rank(self) -> tuple[tuple[int, ...], int]:
        """Lower is more specific: literal beats {variable} beats {greedy+}, left to right; verb beats ANY."""
        return tuple(s.kind for s in self.segments), int(self.route.method == ANY_METHOD)


class RouteTable:
    """Selects a route as HTTP API does: the most specific matching path and method, `$default` last."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._compiled: list[_CompiledRoute] = []
        self._default: Route | None = None
        for route in routes:
            if route.path == DEFAULT_ROUTE:
                self._default = route
            else:
                self._compiled.append(_CompiledRoute(route, tuple(_compile(route.path))))

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        request_segments = raw_path.split("/")[1:]
        candidates: list[tuple[_CompiledRoute, dict[str, str]]] = []
        for compiled in self._compiled:
            if compiled.route.method not in (method, ANY_METHOD):
                continue
            parameters = _match_segments(compiled.segments, request_segments)
            if parameters is not None:
                candidates.append((compiled, parameters))
        if candidates:
            best, parameters = min(candidates, key=lambda c: c[0].rank)
            return RouteMatch(best.route, parameters)
        if self._default is not None:
            return RouteMatch(self._default, {})
        return None


def _compile(path: str) -> list[_Segment]:
    segments = []
    for text in path.split("/")[1:]:
        if text.startswith("{") and text.endswith("+}"):
            segments.append(_Segment(_GREEDY, text[1:-2]))
        elif text.startswith("{") and text.endswith("}"):
            segments.append(_Segment(_VARIABLE, text[1:-1]))
        else:
            segments.append(_Segment(_LITERAL, text))
    return segments


def _match_segments(pattern: Sequence[_Segment], segments: Sequence[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, segment in enumerate(pattern):
        if segment.kind == _GREEDY:
            rest = segments[index:]
            if not rest or not any(rest):
                return None
            parameters[segment.text] = unquote("/".join(rest))
            return parameters
        if index >= len(segments):
            return None
        value = unquote(segments[index])
        if segment.kind == _LITERAL:
            if value != segment.text:
                return None
        elif not value:
            return None
        else:
            parameters[segment.text] = value
    return parameters if len(pattern) == len(segments) else None


# ---- events


@dataclass(frozen=True, slots=True)
class ApiContext:
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
        "time": _clf_time(now),
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


def _clf_time(now: datetime) -> str:
    utc = now.astimezone(UTC)
    return f"{utc.day:02d}/{_MONTHS[utc.month - 1]}/{utc.year}:{utc:%H:%M:%S} +0000"


# ---- responses


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


# ---- the gateway


class LocalGateway:
    """Serves template routes on host:port as an HTTP API `$default` stage would."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 3000,
        resolver: IntrinsicResolver | None = None,
        api: ApiContext | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        functions: LocalFunctions | None = None,
        region: str | None = None,
        iam_credentials: Sequence[LocalCredentials] | None = None,
        jwt_authorizer: JwtAuthorizer | None = None,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """`functions`: execution environments shared with other invokers (the caller then owns their
        environment); without it the gateway builds its routes' functions and applies their environment
        itself while it is bound.

        `read_timeout_seconds`: how long a whole request may take to arrive (see READ_TIMEOUT_SECONDS);
        `max_connections`: how many connections are served at once (see MAX_CONNECTIONS).

        `iam_credentials`: the keys AWS_IAM routes accept; by default the ones botocore resolves in this
        process when the gateway is bound. `region`: the one signatures must be scoped to (the resolver's
        by default)."""
        self.host = host
        self.port = port
        self.api = api or ApiContext()
        self.max_body_bytes = max_body_bytes
        if not (math.isfinite(read_timeout_seconds) and read_timeout_seconds > 0):
            raise ValueError(f"read_timeout_seconds: expected a positive number, got {read_timeout_seconds}")
        if max_connections < 1:
            raise ValueError(f"max_connections: expected at least 1, got {max_connections}")
        self.read_timeout_seconds = read_timeout_seconds
        self.max_connections = max_connections
        self.region = region or (resolver.region if resolver is not None else DEFAULT_REGION)
        self.routes = tuple(routes)
        self._table = RouteTable(routes)
        self._iam_credentials: dict[str, LocalCredentials] | None = (
            None if iam_credentials is None else {c.access_key: c for c in iam_credentials}
        )
        if jwt_authorizer is None and any(r.authorization.type == "JWT" for r in self.routes):
            from maas.local.jwt_authorizer import JwtAuthorizer  # PyJWT only for stacks with JWT routes

            jwt_authorizer = JwtAuthorizer()
        self._jwt_authorizer = jwt_authorizer
        self._owns_functions = functions is None
        if functions is None:
            functions = LocalFunctions(
                (route.function for route in routes),
                root=root,
                resolver=resolver or IntrinsicResolver(parameters={}),
                account_id=self.api.account_id,
            )
        missing = sorted({route.function_id for route in routes} - {f.spec.logical_id for f in functions})
        if missing:
            raise ValueError(f"functions: expected every routed function, missing {', '.join(missing)}")
        self._functions = functions
        self._server: StrictHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def iam_access_keys(self) -> tuple[str, ...]:
        """The access keys AWS_IAM routes accept (known once the gateway is bound)."""
        return tuple(self._iam_credentials or {})

    def bind(self) -> str:
        """Take the port and apply the functions' environment; returns the base URL.

        Connections made before `start()` wait in the listen backlog, so a caller can reserve the port
        first and finish slow setup (seeding a model) before any request is answered.
        """
        if self._iam_credentials is None and any(r.authorization.type == "AWS_IAM" for r in self.routes):
            # Now, not at construction: the local stack sets the embedded store's keys just before.
            found = credentials_from_environment(self.api.account_id)
            self._iam_credentials = {found.access_key: found} if found is not None else {}
            if found is None:
                logger.warning("no AWS credentials in this process: every AWS_IAM route will answer 403")
        if self._server is None:
            if self._owns_functions:
                self._functions.apply_environment()
            try:
                self._server = StrictHttpServer(
                    (self.host, self.port),
                    self.handle,
                    max_body_bytes=self.max_body_bytes,
                    read_timeout_seconds=self.read_timeout_seconds,
                    max_connections=self.max_connections,
                )
            except OSError:
                if self._owns_functions:
                    self._functions.restore_environment()
                raise
        return self.url

    def start(self) -> str:
        """Serve on a background thread, binding first if needed; returns the base URL (port 0: any free)."""
        self.bind()
        assert self._server is not None
        if self._thread is not None:
            raise RuntimeError("the gateway is already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="maas-gateway", daemon=True
        )
        self._thread.start()
        return self.url

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (Ctrl-C), then clean up."""
        self.bind()
        assert self._server is not None
        try:
            self._server.serve_forever(SHUTDOWN_POLL_SECONDS)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None:
                server.shutdown()
                self._thread.join()
                self._thread = None
            server.server_close()
        if self._owns_functions:
            self._functions.restore_environment()

    def __enter__(self) -> LocalGateway:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def handle(self, request: IncomingRequest) -> GatewayResponse:
        """Route one request, invoke its function and map the result; never raises."""
        request_id = str(uuid.uuid4())
        try:
            response = self._respond(request, request_id)
        except Exception:
            # A fault of the gateway itself: the client gets API Gateway's fixed answer, the log the detail.
            logger.exception(
                "the local gateway failed on %s %s", request.method, loggable_path(request.target)
            )
            response = gateway_message(500, "Internal Server Error")
        response.headers.append(("Apigw-Requestid", request_id))
        return response

    def _respond(self, request: IncomingRequest, request_id: str) -> GatewayResponse:
        match = self._table.match(request.method, urlsplit(request.target).path or "/")
        if match is None:
            return gateway_message(404, "Not Found")
        now = datetime.now(UTC)
        try:
            authorizer = self._authorize(request, match.route, now)
        except _AccessDeniedError as denied:
            logger.info(
                "%s %s refused (%s): %s",
                request.method,
                urlsplit(request.target).path,
                match.route.route_key,
                denied.reason,
            )
            return denied.response
        event = http_api_event(
            request, match, self.api, request_id=request_id, now=now, authorizer=authorizer
        )
        function = self._functions[match.route.function_id]
        try:
            return http_response_from_lambda(function.invoke(event))
        except Exception:
            logger.exception(
                "%s failed on %s %s", match.route.function_id, request.method, urlsplit(request.target).path
            )
            return gateway_message(500, "Internal Server Error")

    def _authorize(self, request: IncomingRequest, route: Route, now: datetime) -> dict[str, Any] | None:
        """The event's requestContext.authorizer for an allowed request; _AccessDeniedError otherwise."""
        authorization = route.authorization
        if authorization.type == "NONE":
            return None
        if authorization.type == "AWS_IAM":
            return {"iam": self._verified_caller(request, now).authorizer_context()}
        if authorization.type == "JWT":
            return {"jwt": self._verified_token(request, authorization)}
        raise _AccessDeniedError(
            gateway_message(500, "Internal Server Error"),
            f"{authorization.authorizer} is a Lambda authorizer, which the local gateway does not run",
        )

    def _verified_caller(self, request: IncomingRequest, now: datetime) -> LocalCredentials:
        headers = {name.lower(): value for name, value in request.headers}
        # The client signed the URL it addressed: its scheme and Host, then the raw target.
        scheme = headers.get("x-forwarded-proto", "http")
        url = f"{scheme}://{headers.get('host', f'{self.host}:{self.port}')}{request.target}"
        try:
            return verify_sigv4(
                method=request.method,
                url=url,
                headers=request.headers,
                body=request.body,
                credentials=self._iam_credentials or {},
                region=self.region,
                now=now,
            )
        except SignatureRejectedError as exc:
            raise _AccessDeniedError(gateway_message(403, exc.message), exc.reason) from None

    def _verified_token(self, request: IncomingRequest, authorization: RouteAuthorization) -> dict[str, Any]:
        from maas.local.jwt_authorizer import JwtRejectedError, bearer_token

        assert authorization.jwt is not None and self._jwt_authorizer is not None
        token = bearer_token(_identity_source_value(request, authorization.jwt.identity_sources[0]))
        try:
            if token is None:
                raise JwtRejectedError(401, "no token in " + authorization.jwt.identity_sources[0])
            verified = self._jwt_authorizer.verify(token, authorization.jwt, authorization.scopes)
        except JwtRejectedError as exc:
            response = gateway_message(exc.status, exc.message)
            if exc.status == 401:
                challenge = f'Bearer error="invalid_token", error_description="{exc.reason}"'
                response.headers.append(("WWW-Authenticate", challenge if token else "Bearer"))
            raise _AccessDeniedError(response, exc.reason) from None
        return verified.authorizer_context()

    def signing_example(self, path: str = "/") -> str:
        """A curl command that signs a call to an AWS_IAM route with the first key the gateway accepts."""
        embedded = (self._iam_credentials or {}).get("testing")
        # The embedded store's dummy pair is no secret; real keys stay in the developer's environment.
        if embedded is not None and embedded.secret_key == "testing":
            user = "testing:testing"
        else:
            user = '"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"'
        url = self.url.replace("://0.0.0.0:", "://127.0.0.1:")
        return f'curl -s --aws-sigv4 "aws:amz:{self.region}:{SERVICE}" --user {user} {url}{path}'


def _identity_source_value(request: IncomingRequest, source: str) -> str | None:
    """The value an identity source selects: $request.header.<name> or $request.querystring.<name>."""
    kind, _, name = source.removeprefix("$request.").partition(".")
    if kind == "header":
        values = [value for key, value in request.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None
    if kind == "querystring":
        return dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True)).get(name)
    return None


class _AccessDeniedError(Exception):
    """The route's authorizer refused the request: `response` is API Gateway's answer."""

    def __init__(self, response: GatewayResponse, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason
