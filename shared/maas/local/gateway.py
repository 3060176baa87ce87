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
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import logging
import os
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


def gateway_message(status: int, message: str) -> GatewayResponse:
    """API Gateway's own answers: {"message": ...} as JSON."""
    body = json.dumps({"message": message}).encode()
    return GatewayResponse(status, [("Content-Type", "application/json")], body)


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
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedLambdaResponseError(f"statusCode: expected an integer 100-599, got {status!r}")
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
    ) -> None:
        """`functions`: execution environments shared with other invokers (the caller then owns their
        environment); without it the gateway builds its routes' functions and applies their environment
        itself while it is bound.

        `iam_credentials`: the keys AWS_IAM routes accept; by default the ones botocore resolves in this
        process when the gateway is bound. `region`: the one signatures must be scoped to (the resolver's
        by default)."""
        self.host = host
        self.port = port
        self.api = api or ApiContext()
        self.max_body_bytes = max_body_bytes
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
        response = self._respond(request, request_id)
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
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], gateway: LocalGateway
    ) -> None:
        self.gateway = gateway
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer is routine (a probe's timeout), not a server fault."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.info("%s disconnected before the response was sent", client_address[0])
            return
        super().handle_error(request, client_address)


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _GatewayServer

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

    def _serve(self) -> None:
        gateway = self.server.gateway
        try:
            body = self._read_body(gateway.max_body_bytes)
        except _BodyTooLargeError:
            self.close_connection = True
            self._send(gateway_message(413, "Request Entity Too Large"))
            return
        except ValueError:
            self.close_connection = True
            self._send(gateway_message(400, "Bad Request"))
            return
        request = IncomingRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        self._send(gateway.handle(request))

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            raise _BodyTooLargeError
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _BodyTooLargeError
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: GatewayResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: a presigned URL's query carries its credential, signature and session token.
        path = urlsplit(self.path).path
        logger.info('%s "%s %s" %s %s', self.address_string(), self.command, path, code, size)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class _BodyTooLargeError(Exception):
    pass
