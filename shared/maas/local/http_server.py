"""The local gateway's HTTP/1.1 server: strict request framing, a read deadline, a connection limit.

It reads requests off the socket and writes answers; what a request means (routes, authorizers,
functions) is the caller's, given as a callable from `IncomingRequest` to `GatewayResponse`.
Decisions worth knowing:

- HTTP framing is strict (see maas.local.http_framing); a body over the cap (`max_body_bytes`) is
  refused with 413 before it is read. A refusal is a 4xx whose JSON carries API Gateway's `message`
  and an `error` naming what was expected and what arrived, and the connection closes.
- A whole request must arrive within READ_TIMEOUT_SECONDS of the server starting to wait for it (408
  otherwise; an idle connection just closes), and at most MAX_CONNECTIONS are served at once (429
  past that), so stalled clients cannot hold every thread.
- No HEAD answer, nor any 1xx, 204 or 304, carries a body, whatever the handler returned; a HEAD answer
  keeps the Content-Length the handler declared for its empty body.
- A streamed answer (`GatewayResponse.chunks`) goes out chunk by chunk as it is produced, and its
  producer is closed when the client goes away (maas.local.http_streaming).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from maas.local.http_framing import (
    DECIMAL,
    ClientGoneError,
    DeadlineReader,
    FramingError,
    check_header_lines,
    declared_content_length,
    origin_form,
    read_body,
    shown,
    too_large,
)
from maas.local.http_streaming import send_streamed

logger = logging.getLogger(__name__)

# A whole request (request line, headers and body) must arrive within this many seconds of the gateway
# starting to wait for it, or the connection is answered 408 and closed; an idle keep-alive connection is
# closed silently after as long. 30 s is HTTP API's longest integration timeout: a deployed API never
# gives a whole round trip more than that, so a local client that needs longer to send is stalled.
READ_TIMEOUT_SECONDS = 30.0
# Each connection holds a thread; past this many open at once, a new one is answered 429 and closed.
MAX_CONNECTIONS = 64
MAX_REQUEST_LINE_BYTES = 65536  # http.server's own bound, kept
REFUSAL_SEND_SECONDS = 1.0
# After refusing a request whose body was left unread, the gateway reads on (and drops) at most this
# much for at most this long before it closes, so that the close does not reset the connection and
# lose the answer before the client reads it (what nginx calls a lingering close).
LINGER_SECONDS = 1.0
LINGER_MAX_BYTES = 1024 * 1024


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
class GatewayResponse:
    """An answer: whole (`body`), or streamed when `chunks` is given (then `body` is unused): each chunk
    is written as it arrives, and the iterator is closed when it ends or the client goes away."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunks: Iterator[bytes] | None = None


def gateway_message(status: int, message: str, error: str | None = None) -> GatewayResponse:
    """API Gateway's own answers: {"message": ...} as JSON. `error` says what the local gateway expected
    and what arrived, for refusals API Gateway's edge would make with no body we can mirror."""
    document = {"message": message} if error is None else {"message": message, "error": error}
    return GatewayResponse(status, [("Content-Type", "application/json")], json.dumps(document).encode())


Responder = Callable[[IncomingRequest], GatewayResponse]


class StrictHttpServer(ThreadingHTTPServer):
    """Answers each request on `address` with `respond(request)`: one thread per connection, at most
    `max_connections` of them at once, each request read whole within `read_timeout_seconds` and its
    body refused past `max_body_bytes`."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        respond: Responder,
        *,
        max_body_bytes: int,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """`respond` must not raise: its answer is the client's (a 500 is its to make)."""
        self.respond = respond
        self.max_body_bytes = max_body_bytes
        self.read_timeout_seconds = read_timeout_seconds
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _RequestHandler)

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
        limit = self.max_connections
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


# The methods an HTTP API routes; http.server answers any other 501.
HTTP_API_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BODYLESS_STATUSES = frozenset({204, 304})


class _RequestHandler(BaseHTTPRequestHandler):
    """Reads one HTTP/1.1 request at a time, strictly framed and within the read deadline, and answers it
    with what `respond` returns. Every request gets an answer or a closed connection, never a traceback."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: a streamed token is one small write, which Nagle's algorithm would hold back until the
    # client acknowledged the previous one (up to its delayed-ACK timer, ~40 ms).
    disable_nagle_algorithm = True
    server: StrictHttpServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket stays open until the server closes it; this file would hold it
        self._reader = DeadlineReader(self.connection, self.server.read_timeout_seconds)
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
                timeout = self.server.read_timeout_seconds
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
        except FramingError as refused:
            self.close_connection = True
            self._linger = True
            logger.info("%s %s refused: %s", self.address_string(), self.command, refused.detail)
            self._answer_quietly(gateway_message(refused.status, _reason(refused.status), refused.detail))
        except (ClientGoneError, ConnectionError) as gone:
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
            raise FramingError(
                414, f"request line: expected at most {MAX_REQUEST_LINE_BYTES} bytes, got more"
            )
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return  # parse_request has answered through send_error
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            raise FramingError(
                505, f"HTTP version: expected HTTP/1.0 or HTTP/1.1, got {shown(self.request_version)}"
            )
        if self.command not in HTTP_API_METHODS:
            self.send_error(501, f"method: expected one of HTTP API's, got {shown(self.command)}")
            return
        self._serve()
        self.wfile.flush()

    def handle_expect_100(self) -> bool:
        """Refuse a body before the client sends it, rather than invite it with 100 Continue."""
        check_header_lines(self.headers)
        content_length = declared_content_length(self.headers)
        if content_length is not None and content_length > self.server.max_body_bytes:
            raise too_large(content_length, self.server.max_body_bytes)
        return super().handle_expect_100()

    def _serve(self) -> None:
        target = origin_form(self.path)
        body = read_body(
            self.headers, self.rfile, http_version=self.request_version, limit=self.server.max_body_bytes
        )
        request = IncomingRequest(
            method=self.command,
            target=target,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        self._send(self.server.respond(request))

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
        self.connection.settimeout(self.server.read_timeout_seconds)  # a client that never reads
        if response.chunks is not None:
            bodyless = self.command == "HEAD" or response.status in _BODYLESS_STATUSES
            send_streamed(self, response.status, response.headers, response.chunks, bodyless=bodyless)
            return
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
            if bodyless and not response.body and declared_length and DECIMAL.fullmatch(declared_length):
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
        path = loggable_path(self.path) if self.command else "-"
        logger.info('%s "%s %s" %s %s', self.address_string(), self.command or "-", path, code, size)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def loggable_path(target: str) -> str:
    """The target without its query (a presigned URL's credential), whether or not it parses."""
    return target.partition("?")[0][:200]


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
