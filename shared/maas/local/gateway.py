"""An API Gateway HTTP API emulator: real payload-2.0 events, handlers called in-process.

It routes, builds events and maps responses the way HTTP API does, so a function that works here
sees the same dicts in AWS. Decisions worth knowing:

- One execution environment per function (`LocalFunction`): invocations of one function are
  serialized, as in a single warm Lambda container (Powertools resolvers keep the current event on
  the app object). The HTTP server is threaded, so a slow function never blocks another one. The
  local stack shares one `LocalFunctions` between the gateway and its SQS pollers, so a function
  invoked by HTTP and by a queue is one environment with one model cache.
- Each function's template environment (resolved by an `IntrinsicResolver`) is applied to
  `os.environ` before any handler is imported, and restored afterwards: by the gateway when it
  builds its own functions, by whoever owns a shared `LocalFunctions` otherwise. The process has
  one environment, so functions that disagree on a variable get the first function's value and a
  warning.
- Handlers are imported from their file (CodeUri + Handler) under a unique module name, once, on
  the first request, with the code folder on sys.path while the module initialises; modules from
  that folder are private to the function, as they would be in its own container.
- Each route's authorization (from template.yaml) is enforced before its function is invoked, with
  API Gateway's answers: AWS_IAM needs a SigV4 signature by a key the local process holds (403
  otherwise, see maas.local.sigv4), JWT a valid bearer token of the configured issuer (401, see
  maas.local.jwt_authorizer). The event then carries requestContext.authorizer.iam or .jwt.
- HTTP framing is strict, as a server behind no proxy must be (RFC 9112): a body is framed by one
  Content-Length (repeats must agree) or by `Transfer-Encoding: chunked` alone, never both; chunk sizes
  are plain hex digits; a body over the cap (10 MB, API Gateway's) is refused with 413 before it is
  read. Anything else is a 4xx whose JSON carries API Gateway's `message` and an `error` naming what
  was expected and what arrived, and the connection closes.
- A whole request must arrive within READ_TIMEOUT_SECONDS of the gateway starting to wait for it (408
  otherwise; an idle connection just closes), and at most MAX_CONNECTIONS are served at once (429
  past that), so stalled clients cannot hold every thread.
- HEAD routes like HTTP API does: to HEAD and ANY routes (then `$default`), never to a GET route. No
  HEAD answer, nor any 1xx, 204 or 304, carries a body, whatever the function returned; a HEAD answer
  keeps the Content-Length the function declared for its empty body.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from maas.local.sigv4 import (
    LOCAL_ACCOUNT_ID,
    SERVICE,
    LocalCredentials,
    SignatureRejectedError,
    credentials_from_environment,
    verify_sigv4,
)
from maas.local.template import (
    ANY_METHOD,
    DEFAULT_MEMORY_MB,
    DEFAULT_REGION,
    DEFAULT_ROUTE,
    DEFAULT_TIMEOUT_SECONDS,
    FunctionSpec,
    IntrinsicResolver,
    Route,
    RouteAuthorization,
)

if TYPE_CHECKING:
    from maas.local.jwt_authorizer import JwtAuthorizer

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
# A whole request (request line, headers and body) must arrive within this many seconds of the gateway
# starting to wait for it, or the connection is answered 408 and closed; an idle keep-alive connection is
# closed silently after as long. 30 s is HTTP API's longest integration timeout: a deployed API never
# gives a whole round trip more than that, so a local client that needs longer to send is stalled.
READ_TIMEOUT_SECONDS = 30.0
# Each connection holds a thread; past this many open at once, a new one is answered 429 and closed.
MAX_CONNECTIONS = 64
MAX_REQUEST_LINE_BYTES = 65536  # http.server's own bound, kept
MAX_CHUNK_LINE_BYTES = 4096
MAX_TRAILER_LINES = 100
MAX_TRAILER_LINE_BYTES = 8192
LOCAL_API_ID = "local"
SHUTDOWN_POLL_SECONDS = 0.05
REFUSAL_SEND_SECONDS = 1.0
# After refusing a request whose body was left unread, the gateway reads on (and drops) at most this
# much for at most this long before it closes, so that the close does not reset the connection and
# lose the answer before the client reads it (what nginx calls a lingering close).
LINGER_SECONDS = 1.0
LINGER_MAX_BYTES = 1024 * 1024

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

LambdaHandler = Callable[[dict[str, Any], Any], Any]


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
class IncomingRequest:
    """An HTTP request as the gateway received it; headers keep their order and duplicates."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


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


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedLambdaResponseError(ValueError):
    """The function returned something HTTP API cannot turn into a response (it answers 500)."""


def gateway_message(status: int, message: str, error: str | None = None) -> GatewayResponse:
    """API Gateway's own answers: {"message": ...} as JSON. `error` says what the local gateway expected
    and what arrived, for refusals API Gateway's edge would make with no body we can mirror."""
    document = {"message": message} if error is None else {"message": message, "error": error}
    return GatewayResponse(status, [("Content-Type", "application/json")], json.dumps(document).encode())


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


# ---- the emulated Lambda runtime


@dataclass(slots=True)
class LocalLambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass
class LocalFunction:
    """One function's execution environment: its handler, imported on first use, one invoke at a time."""

    spec: FunctionSpec
    root: Path
    memory_mb: int
    timeout_seconds: float
    region: str = "us-east-1"
    account_id: str = LOCAL_ACCOUNT_ID
    _handler: LambdaHandler | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            handler = self._load()
            started = time.monotonic()
            context = LocalLambdaContext(
                function_name=self.spec.logical_id,
                memory_limit_in_mb=self.memory_mb,
                invoked_function_arn=(
                    f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.spec.logical_id}"
                ),
                aws_request_id=str(uuid.uuid4()),
                deadline_ms=int((time.time() + self.timeout_seconds) * 1000),
                log_group_name=f"/aws/lambda/{self.spec.logical_id}",
            )
            try:
                return handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.timeout_seconds:
                    logger.warning(
                        "%s took %.1fs, over its %ss Timeout: Lambda would have stopped it",
                        self.spec.logical_id,
                        elapsed,
                        self.timeout_seconds,
                    )

    def _load(self) -> LambdaHandler:
        if self._handler is None:
            module = _import_file(self.spec.handler_file(self.root), self.spec.logical_id)
            handler = getattr(module, self.spec.handler_function, None)
            if not callable(handler):
                raise ImportError(f"{self.spec.logical_id}: handler '{self.spec.handler}' is not a function")
            self._handler = handler
        return self._handler


class LocalFunctions:
    """The execution environments of a set of functions, one per function, built once and shared.

    It also owns the process environment the functions need: `apply_environment()` merges every
    function's resolved Environment.Variables into `os.environ` (functions with no HTTP route too)
    and `restore_environment()` puts each variable back as it was.
    """

    def __init__(
        self,
        specs: Iterable[FunctionSpec],
        *,
        root: Path,
        resolver: IntrinsicResolver,
        account_id: str = LOCAL_ACCOUNT_ID,
        environment_overrides: Mapping[str, str] | None = None,
    ) -> None:
        """`environment_overrides`: local values that beat every function's template value (the local
        store's bucket, whatever name the template gives the deployed one)."""
        self._resolver = resolver
        self._environment_overrides = dict(environment_overrides or {})
        self._functions: dict[str, LocalFunction] = {}
        for spec in specs:
            if spec.logical_id not in self._functions:
                self._functions[spec.logical_id] = LocalFunction(
                    spec=spec,
                    root=root,
                    memory_mb=int(resolver.resolve_number(spec.memory_size, DEFAULT_MEMORY_MB)),
                    timeout_seconds=resolver.resolve_number(spec.timeout, DEFAULT_TIMEOUT_SECONDS),
                    region=resolver.region,
                    account_id=account_id,
                )
        self._saved_environ: dict[str, str | None] = {}

    def __getitem__(self, logical_id: str) -> LocalFunction:
        return self._functions[logical_id]

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self._functions

    def __iter__(self) -> Iterator[LocalFunction]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def apply_environment(self) -> None:
        merged: dict[str, tuple[str, str]] = {}
        for function in self._functions.values():
            for name, value in self._resolver.resolve_environment(function.spec).items():
                if name in merged and merged[name][1] != value:
                    logger.warning(
                        "%s=%r from %s kept; %s wants %r (one process, one environment)",
                        name,
                        merged[name][1],
                        merged[name][0],
                        function.spec.logical_id,
                        value,
                    )
                    continue
                merged[name] = (function.spec.logical_id, value)
        for name, value in self._environment_overrides.items():
            merged[name] = ("the local stack", value)
        for name, (_, value) in merged.items():
            self._saved_environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def restore_environment(self) -> None:
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environ.clear()


# sys.path and sys.modules are process-wide: two functions initialising at once (an HTTP request and
# an SQS poller) would each see the other's folder and could drop the other's sibling modules.
_HANDLER_IMPORT_LOCK = threading.Lock()


def _import_file(path: Path, logical_id: str) -> ModuleType:
    """Import a handler file as Lambda does, with its folder importable while it initialises.

    Sibling modules it imported are then dropped from sys.modules (the handler keeps its references),
    so two functions that each ship a `helpers.py` never share one.
    """
    with _HANDLER_IMPORT_LOCK:
        return _import_file_unlocked(path, logical_id)


def _import_file_unlocked(path: Path, logical_id: str) -> ModuleType:
    name = f"maas_local_function_{logical_id.lower()}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{logical_id}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    code_dir = path.parent.resolve()
    before = set(sys.modules)
    sys.modules[name] = module
    sys.path.insert(0, str(code_dir))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(code_dir))
        for added in set(sys.modules) - before - {name}:
            if _is_sibling(sys.modules.get(added), code_dir):
                sys.modules.pop(added, None)
    return module


def _is_sibling(module: object, code_dir: Path) -> bool:
    """A module found through the function's folder: <folder>/<top>.py or inside <folder>/<top>/."""
    origin = getattr(module, "__file__", None)
    if not isinstance(module, ModuleType) or origin is None:
        return False
    top = module.__name__.partition(".")[0]
    return Path(origin).resolve().is_relative_to(code_dir) and (
        (code_dir / f"{top}.py").is_file() or (code_dir / top / "__init__.py").is_file()
    )


# ---- the server


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
        self._server: _GatewayServer | None = None
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
                self._server = _GatewayServer((self.host, self.port), _GatewayRequestHandler, self)
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
            logger.exception("the local gateway failed on %s %s", request.method, _path_of(request.target))
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


class _GatewayServer(ThreadingHTTPServer):
    """One thread per connection, at most `gateway.max_connections` of them at once."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], gateway: LocalGateway
    ) -> None:
        self.gateway = gateway
        self._slots = threading.BoundedSemaphore(gateway.max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse_busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse_busy(self, request: socket.socket, client_address: Any) -> None:
        """API Gateway's throttling answer, written on the accepting thread (it fits in the socket's send
        buffer) so that a flood of connections never costs a thread each."""
        limit = self.gateway.max_connections
        logger.warning(
            "%s refused: %d connections are open, the most the gateway serves at once",
            client_address[0],
            limit,
        )
        response = gateway_message(
            429, "Too Many Requests", f"connections: expected at most {limit} open at once, got one more"
        )
        head = (
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(REFUSAL_SEND_SECONDS)
            request.sendall(head.encode("ascii") + response.body)
            request.setblocking(False)
            # What the client already sent is read off, so that closing does not reset the connection
            # before the client has read the answer.
            for _ in range(16):
                if not request.recv(65536):
                    break
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer is routine (a probe's timeout), not a server fault."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.info("%s disconnected before the response was sent", client_address[0])
            return
        super().handle_error(request, client_address)


class _DeadlineReader(io.RawIOBase):
    """The connection's bytes, each read waiting no later than the current request's deadline.

    A socket timeout alone bounds each read, so a client sending a byte just within it (slowloris)
    would hold the connection for ever; here the whole request shares one deadline."""

    def __init__(self, connection: socket.socket, timeout_seconds: float) -> None:
        super().__init__()
        self._connection = connection
        self._timeout_seconds = timeout_seconds
        self._deadline = math.inf
        self.received = 0

    def begin_request(self) -> None:
        self._deadline = time.monotonic() + self._timeout_seconds
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request's read deadline has passed")
        self._connection.settimeout(remaining)
        count = self._connection.recv_into(buffer)
        self.received += count
        return count


class _FramingError(Exception):
    """The request's framing is refused: answered `status` with `detail`, then the connection closes,
    since where the next request would start is unknown."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _ClientGoneError(Exception):
    """The connection ended in the middle of a request: nobody is left to answer."""


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[^"\\\r\n]|\\[^\r\n])*"'
# chunk-size [ chunk-ext ] CRLF (RFC 9112 7.1): hex digits only, no sign, prefix, space or underscore.
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*)\r\n"
)
_FIELD_NAME = re.compile(_TOKEN.decode("ascii"))
_TRAILER_LINE = re.compile(_TOKEN + rb":[^\r\n]*\r\n")
_DECIMAL = re.compile(r"[0-9]+")
# Beyond this many significant digits a length is past any limit the gateway could have.
_MAX_LENGTH_DIGITS = 18
_BODYLESS_STATUSES = frozenset({204, 304})


def _shown(text: str | bytes) -> str:
    """A framing token as it arrived, quoted and cut short; never body bytes."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    text = text.removesuffix("\n").removesuffix("\r")
    return repr(text if len(text) <= 24 else text[:24] + "...")


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    """Reads one HTTP/1.1 request at a time, strictly framed and within the read deadline, and answers it
    with what the gateway returns. Every request gets an answer or a closed connection, never a traceback."""

    protocol_version = "HTTP/1.1"
    server: _GatewayServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket stays open until the server closes it; this file would hold it
        self._reader = _DeadlineReader(self.connection, self.server.gateway.read_timeout_seconds)
        self.rfile = io.BufferedReader(self._reader)
        self._response_started = False
        self._linger = False

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._drain()

    def _drain(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_MAX_BYTES and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                data = self.connection.recv(65536)
                if not data:
                    return
                drained += len(data)
        except OSError:
            pass

    def handle_one_request(self) -> None:
        self._reader.begin_request()
        self._response_started = False
        self.command, self.requestline, self.request_version = "", "", self.protocol_version
        try:
            self._read_and_answer()
        except TimeoutError:
            self.close_connection = True
            if self._reader.received and not self._response_started:
                timeout = self.server.gateway.read_timeout_seconds
                self._answer_quietly(
                    gateway_message(
                        408,
                        "Request Timeout",
                        f"request: expected it whole within {timeout:g} s, "
                        f"got {self._reader.received} bytes of it in that time",
                    )
                )
            else:
                logger.debug("%s idle for the read timeout, closed", self.address_string())
        except _FramingError as refused:
            self.close_connection = True
            self._linger = True
            logger.info("%s %s refused: %s", self.address_string(), self.command, refused.detail)
            self._answer_quietly(gateway_message(refused.status, _reason(refused.status), refused.detail))
        except (_ClientGoneError, ConnectionError) as gone:
            self.close_connection = True
            logger.info("%s hung up mid-request (%s)", self.address_string(), type(gone).__name__)
        except Exception:
            self.close_connection = True
            logger.exception("the local gateway failed reading or answering a request")
            if not self._response_started:
                self._answer_quietly(gateway_message(500, "Internal Server Error"))

    def _read_and_answer(self) -> None:
        """http.server's handle_one_request, with the request line bounded as it bounds it."""
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
        if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
            raise _FramingError(
                414, f"request line: expected at most {MAX_REQUEST_LINE_BYTES} bytes, got more"
            )
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return  # parse_request has answered through send_error
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _FramingError(
                505, f"HTTP version: expected HTTP/1.0 or HTTP/1.1, got {_shown(self.request_version)}"
            )
        handler = getattr(self, f"do_{self.command}", None)
        if handler is None:
            self.send_error(501, f"method: expected one of HTTP API's, got {_shown(self.command)}")
            return
        handler()
        self.wfile.flush()

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def handle_expect_100(self) -> bool:
        """Refuse a body before the client sends it, rather than invite it with 100 Continue."""
        self._check_header_lines()
        content_length = self._content_length()
        if content_length is not None and content_length > self.server.gateway.max_body_bytes:
            raise self._too_large(content_length)
        return super().handle_expect_100()

    def _serve(self) -> None:
        gateway = self.server.gateway
        target = _origin_form(self.path)
        body = self._read_body(gateway.max_body_bytes)
        request = IncomingRequest(
            method=self.command,
            target=target,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        self._send(gateway.handle(request))

    # ---- the body, as RFC 9112 section 6 frames it

    def _read_body(self, limit: int) -> bytes:
        self._check_header_lines()
        transfer_encodings = self.headers.get_all("Transfer-Encoding") or []
        content_length = self._content_length()
        if transfer_encodings:
            if content_length is not None:
                # A front end and this server could each take a different one: request smuggling.
                raise _FramingError(
                    400, "Content-Length and Transfer-Encoding: expected at most one of them, got both"
                )
            if self.request_version == "HTTP/1.0":
                raise _FramingError(400, "Transfer-Encoding: expected none in an HTTP/1.0 request, got one")
            codings = [coding.strip() for value in transfer_encodings for coding in value.split(",")]
            if [coding.lower() for coding in codings] != ["chunked"]:
                raise _FramingError(
                    400, f"Transfer-Encoding: expected chunked alone, got {_shown(', '.join(codings))}"
                )
            return self._read_chunked(limit)
        if content_length is None:
            return b""
        if content_length > limit:
            raise self._too_large(content_length)
        return self._read_exactly(content_length)

    def _check_header_lines(self) -> None:
        """Header lines http.client's parser would drop or join quietly are refused, since a framing header
        hidden that way ("Content-Length : 5") would leave its body to be read as the next request."""
        if self.headers.defects or self.headers.get_payload():
            raise _FramingError(400, "headers: expected 'name: value' lines, got a line that is not one")
        for name, value in self.headers.items():
            if not _FIELD_NAME.fullmatch(name):
                raise _FramingError(400, f"header name: expected a token, got {_shown(name)}")
            if "\r" in value or "\n" in value:
                raise _FramingError(400, f"header {name}: expected one line, got a folded value")

    def _content_length(self) -> int | None:
        """The declared length; repeated headers or list members must all agree (RFC 9110 8.6)."""
        values = self.headers.get_all("Content-Length")
        if values is None:
            return None
        members = [member.strip() for value in values for member in value.split(",")]
        for member in members:
            if not _DECIMAL.fullmatch(member):
                raise _FramingError(
                    400, f"Content-Length: expected a decimal number of bytes, got {_shown(member)}"
                )
        if len({member.lstrip("0") for member in members}) > 1:
            raise _FramingError(
                400, f"Content-Length: expected one length, got {len(set(members))} different ones"
            )
        digits = members[0].lstrip("0") or "0"
        return int(digits) if len(digits) <= _MAX_LENGTH_DIGITS else 10**_MAX_LENGTH_DIGITS

    def _too_large(self, declared: int) -> _FramingError:
        limit = self.server.gateway.max_body_bytes
        shown = str(declared) if declared < 10**_MAX_LENGTH_DIGITS else f"over 10^{_MAX_LENGTH_DIGITS}"
        return _FramingError(413, f"body: expected at most {limit} bytes, got a Content-Length of {shown}")

    def _read_exactly(self, count: int) -> bytes:
        data = self.rfile.read(count)
        if len(data) < count:
            raise _ClientGoneError
        return data

    def _read_line(self, limit: int, what: str) -> bytes:
        line = self.rfile.readline(limit + 1)
        if len(line) > limit:
            raise _FramingError(400, f"{what}: expected at most {limit} bytes ending in CRLF, got more")
        if not line.endswith(b"\n"):
            raise _ClientGoneError
        if not line.endswith(b"\r\n"):
            raise _FramingError(400, f"{what}: expected it to end in CRLF, got a bare LF")
        return line

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self._read_line(MAX_CHUNK_LINE_BYTES, "chunk size line")
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                size_field = line.partition(b";")[0]
                raise _FramingError(
                    400,
                    "chunk size: expected hexadecimal digits, then optional ;extensions and CRLF, "
                    f"got {_shown(size_field)}",
                )
            digits = match.group(1).lstrip(b"0")
            if not digits:
                self._read_trailers()
                return b"".join(chunks)
            # Refused before the chunk is read: the sum, or a size past any limit, says enough.
            if len(digits) > _MAX_LENGTH_DIGITS or total + int(digits, 16) > limit:
                raise _FramingError(
                    413, f"body: expected at most {limit} bytes, got chunks adding up to more"
                )
            size = int(digits, 16)
            chunks.append(self._read_exactly(size))
            total += size
            if self._read_exactly(2) != b"\r\n":
                raise _FramingError(400, f"chunk: expected CRLF after its {size} bytes, got other bytes")

    def _read_trailers(self) -> None:
        """Trailer fields are read and dropped: API Gateway hands a function no trailers."""
        for _ in range(MAX_TRAILER_LINES + 1):
            line = self._read_line(MAX_TRAILER_LINE_BYTES, "trailer line")
            if line == b"\r\n":
                return
            if not _TRAILER_LINE.fullmatch(line):
                raise _FramingError(400, "trailer: expected a 'name: value' line, got a line that is not one")
        raise _FramingError(400, f"trailers: expected at most {MAX_TRAILER_LINES} lines, got more")

    # ---- answers

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's refusals (a bad request line, too many headers ...) in the gateway's JSON shape."""
        self.close_connection = True
        self._linger = True
        reason = _reason(code)
        self._answer_quietly(
            gateway_message(code, reason, message if message and message != reason else None)
        )

    def _answer_quietly(self, response: GatewayResponse) -> None:
        """An answer on a connection about to close, which the client may have left already."""
        try:
            self._send(response)
            self.wfile.flush()
        except OSError as exc:
            logger.info("%s: the answer could not be sent (%s)", self.address_string(), type(exc).__name__)
        except Exception:
            logger.exception("the local gateway failed answering a request; the connection closes")

    def _send(self, response: GatewayResponse) -> None:
        """The response; HEAD, 1xx, 204 and 304 never carry a body, whatever the function returned."""
        self._response_started = True
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            # http.server writes no status line to HTTP/0.9, its guess for a request line it cannot read.
            self.request_version = self.protocol_version
        self.connection.settimeout(self.server.gateway.read_timeout_seconds)  # a client that never reads
        status = response.status
        declared_length: str | None = None
        self.send_response(status)
        for name, value in response.headers:
            key = name.lower()
            if key == "content-length":
                declared_length = value.strip()
            elif key not in ("connection", "transfer-encoding"):
                self.send_header(name, value)
        bodyless = self.command == "HEAD" or status < 200 or status in _BODYLESS_STATUSES
        if status >= 200 and status != 204:
            if bodyless and not response.body and declared_length and _DECIMAL.fullmatch(declared_length):
                # A HEAD answer keeps the length the GET would have had, as the function declared it.
                self.send_header("Content-Length", declared_length)
            elif status != 304 or response.body:
                self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not bodyless:
            self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: a presigned URL's query carries its credential, signature and session token.
        path = _path_of(self.path) if self.command else "-"
        logger.info('%s "%s %s" %s %s', self.address_string(), self.command or "-", path, code, size)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def _origin_form(target: str) -> str:
    """The request target as /path?query: an absolute URL (which HTTP/1.1 servers must take) is reduced
    to its path and query; anything else ("*", "foo", a URL that does not parse) is refused."""
    if target.startswith("/"):
        return target
    try:
        parts = urlsplit(target)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise _FramingError(400, f"request target: expected /path or an http(s) URL, got {_shown(target)}")
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _path_of(target: str) -> str:
    """The target without its query (a presigned URL's credential), whether or not it parses."""
    return target.partition("?")[0][:200]


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
