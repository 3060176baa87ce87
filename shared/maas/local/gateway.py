"""An API Gateway HTTP API emulator: real payload-2.0 events, handlers called in-process.

It routes, authorizes, builds events and maps responses the way HTTP API does, so a function that
works here sees the same dicts in AWS. The parts it stands on: maas.local.http_server reads and
frames the requests (strict HTTP/1.1, a read deadline, a connection limit), maas.local.template_routes
picks the route, maas.local.gateway_authorization enforces its authorization, maas.local.http_events
builds the event and maps the answer back, and maas.local.lambdas hosts the functions (one execution
environment each, their template environment applied). Decisions worth knowing:

- The HTTP server is threaded, so a slow function never blocks another one.
- A gateway given no `LocalFunctions` builds its routes' functions and applies their environment
  itself while it is bound; one given a shared `LocalFunctions` leaves that to its owner.
- Each route's authorization (from template.yaml) is enforced before its function is invoked, with
  API Gateway's answers (403 for a SigV4 refusal, 401 for a JWT one).
- A body over the cap (MAX_BODY_BYTES, 10 MB, API Gateway's) is refused with 413 before it is read.
- HEAD routes like HTTP API does: to HEAD and ANY routes (then `$default`), never to a GET route. The
  server sends no body with a HEAD answer, whatever the function returned.
- A streaming REST API route (maas.local.rest_api_routes) gets the REST proxy event (maas.local.rest_events)
  and the function's `stream_handler`; its HttpStream is written chunk by chunk as it is produced.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from maas.api.http_stream import (
    INTERNAL_ERROR,
    SERVER_ERROR_TYPE,
    ChunksUntilError,
    HttpStream,
    error_document,
)
from maas.local.cloudformation import DEFAULT_REGION, IntrinsicResolver
from maas.local.console import ConsoleSite
from maas.local.gateway_authorization import AccessDeniedError, RouteAuthorizer
from maas.local.http_events import (
    ApiContext,
    MalformedLambdaResponseError,
    http_api_event,
    http_response_from_lambda,
)
from maas.local.http_server import (
    MAX_CONNECTIONS,
    READ_TIMEOUT_SECONDS,
    GatewayResponse,
    IncomingRequest,
    StrictHttpServer,
    gateway_message,
    loggable_path,
)
from maas.local.lambdas import LocalFunction, LocalFunctions
from maas.local.rest_events import rest_api_event
from maas.local.sam import TemplateRoute
from maas.local.sigv4 import SERVICE, LocalCredentials
from maas.local.template_routes import RouteMatch, TemplateRoutes

if TYPE_CHECKING:
    from maas.local.jwt_authorizer import JwtAuthorizer

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
# The embedded store's well-known dummy key pair (moto's): both halves are this string.
EMBEDDED_ACCESS_KEY = "testing"
SHUTDOWN_POLL_SECONDS = 0.05


class LocalGateway:
    """Serves template routes on host:port as an HTTP API `$default` stage would."""

    def __init__(
        self,
        routes: Sequence[TemplateRoute],
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
        console: bool = False,
    ) -> None:
        """`functions`: execution environments shared with other invokers (the caller then owns their
        environment); without it the gateway builds its routes' functions and applies their environment
        itself while it is bound.

        `read_timeout_seconds`: how long a whole request may take to arrive (see READ_TIMEOUT_SECONDS);
        `max_connections`: how many connections are served at once (see MAX_CONNECTIONS).

        `iam_credentials`: the keys AWS_IAM routes accept; by default the ones botocore resolves in this
        process when the gateway is bound. `region`: the one signatures must be scoped to (the resolver's
        by default).

        `console`: also serve the web console at /console (maas.local.console), as `make serve` does."""
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
        self._table = TemplateRoutes(routes)
        self._authorizer = RouteAuthorizer(
            self.routes,
            account_id=self.api.account_id,
            region=self.region,
            iam_credentials=iam_credentials,
            jwt_authorizer=jwt_authorizer,
        )
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
        self._console = ConsoleSite(self.console_config) if console else None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def iam_access_keys(self) -> tuple[str, ...]:
        """The access keys AWS_IAM routes accept (known once the gateway is bound)."""
        return tuple(self._authorizer.iam_credentials)

    def bind(self) -> str:
        """Take the port and apply the functions' environment; returns the base URL.

        Connections made before `start()` wait in the listen backlog, so a caller can reserve the port
        first and finish slow setup (seeding a model) before any request is answered.
        """
        # Now, not at construction: the local stack sets the embedded store's keys just before.
        self._authorizer.resolve_iam_credentials()
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
        if self._console is not None and (page := self._console.answer(request)) is not None:
            return page
        match = self._table.match(request.method, urlsplit(request.target).path or "/")
        if match is None:
            return gateway_message(404, "Not Found")
        now = datetime.now(UTC)
        try:
            authorizer = self._authorizer.authorize(
                request, match.route, now, default_host=f"{self.host}:{self.port}"
            )
        except AccessDeniedError as denied:
            logger.info(
                "%s %s refused (%s): %s",
                request.method,
                urlsplit(request.target).path,
                match.route.route_key,
                denied.reason,
            )
            return denied.response
        function = self._functions[match.route.function_id]
        try:
            if match.route.streaming:
                event = rest_api_event(
                    request, match, caller=authorizer, api=self.api, request_id=request_id, now=now
                )
                return self._stream(function, event, match)
            event = http_api_event(
                request, match, self.api, request_id=request_id, now=now, authorizer=authorizer
            )
            return http_response_from_lambda(function.invoke(event))
        except Exception:
            logger.exception(
                "%s failed on %s %s", match.route.function_id, request.method, urlsplit(request.target).path
            )
            return gateway_message(500, "Internal Server Error")

    def _stream(self, function: LocalFunction, event: dict[str, Any], match: RouteMatch) -> GatewayResponse:
        """The function's streamed answer; a stream handler that raises before answering gets the 500 our
        AWS runtime loop gives it (maas.apps.streaming_runtime), not API Gateway's."""
        try:
            stream = function.invoke_streaming(event)
        except ImportError:
            raise
        except Exception:
            logger.exception("%s's stream handler failed before its first byte", match.route.function_id)
            document = json.dumps(error_document(INTERNAL_ERROR, SERVER_ERROR_TYPE)).encode()
            return GatewayResponse(500, [("Content-Type", "application/json")], document)
        return streamed_response(stream)

    def console_config(self) -> dict[str, Any]:
        """What the console page needs to call this gateway: its region, the routes it must sign (AWS_IAM)
        and, only when it is the embedded store's dummy pair, the key it signs them with (a real key never
        goes into a page)."""
        signed = sorted({route.route_key for route in self.routes if route.authorization.type == "AWS_IAM"})
        embedded = self._authorizer.iam_credentials.get(EMBEDDED_ACCESS_KEY)
        credentials: dict[str, str] | None = None
        if embedded is not None and {embedded.secret_key, embedded.session_token or EMBEDDED_ACCESS_KEY} == {
            EMBEDDED_ACCESS_KEY
        }:
            credentials = {"accessKeyId": embedded.access_key, "secretAccessKey": embedded.secret_key}
            if embedded.session_token:
                credentials["sessionToken"] = embedded.session_token
        return {"region": self.region, "credentials": credentials, "signedRoutes": signed}

    def signing_example(self, path: str = "/") -> str:
        """A curl command that signs a call to an AWS_IAM route with the first key the gateway accepts."""
        embedded = self._authorizer.iam_credentials.get(EMBEDDED_ACCESS_KEY)
        # The embedded store's dummy pair is no secret; real keys stay in the developer's environment.
        if embedded is not None and embedded.secret_key == EMBEDDED_ACCESS_KEY:
            user = "testing:testing"
        else:
            user = '"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"'
        url = self.url.replace("://0.0.0.0:", "://127.0.0.1:")
        return f'curl -s --aws-sigv4 "aws:amz:{self.region}:{SERVICE}" --user {user} {url}{path}'


def streamed_response(stream: HttpStream) -> GatewayResponse:
    """A streaming handler's answer as the gateway writes it: the status and headers it chose, then its
    chunks as they come; a failure after the first byte ends the stream with an SSE error event."""
    status = stream.status
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        close = getattr(stream.chunks, "close", None)
        if callable(close):
            close()
        raise MalformedLambdaResponseError(f"HttpStream.status: expected an integer 200-599, got {status!r}")
    headers = [(str(name), str(value)) for name, value in stream.headers.items()]
    return GatewayResponse(status, headers, b"", chunks=ChunksUntilError(stream.chunks))
