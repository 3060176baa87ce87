"""The local gateway's HTTP/1.1 server: strict request framing, a read deadline, a connection limit.

It reads requests off the socket and writes answers; what a request means (routes, authorizers,
functions) is the caller's, given as a callable from `IncomingRequest` to `GatewayResponse`.
Decisions worth knowing:

- HTTP framing is strict, as a server behind no proxy must be (RFC 9112): a body is framed by one
  Content-Length (repeats must agree) or by `Transfer-Encoding: chunked` alone, never both; chunk sizes
  are plain hex digits; a body over the cap (`max_body_bytes`) is refused with 413 before it is read.
  Anything else is a 4xx whose JSON carries API Gateway's `message` and an `error` naming what was
  expected and what arrived, and the connection closes.
- A whole request must arrive within READ_TIMEOUT_SECONDS of the server starting to wait for it (408
  otherwise; an idle connection just closes), and at most MAX_CONNECTIONS are served at once (429
  past that), so stalled clients cannot hold every thread.
- No HEAD answer, nor any 1xx, 204 or 304, carries a body, whatever the handler returned; a HEAD answer
  keeps the Content-Length the handler declared for its empty body.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

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
    status: int
    headers: list[tuple[str, str]]
    body: bytes


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


class _RequestHandler(BaseHTTPRequestHandler):
    """Reads one HTTP/1.1 request at a time, strictly framed and within the read deadline, and answers it
    with what `respond` returns. Every request gets an answer or a closed connection, never a traceback."""

    protocol_version = "HTTP/1.1"
    server: StrictHttpServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket stays open until the server closes it; this file would hold it
        self._reader = _DeadlineReader(self.connection, self.server.read_timeout_seconds)
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
        if content_length is not None and content_length > self.server.max_body_bytes:
            raise self._too_large(content_length)
        return super().handle_expect_100()

    def _serve(self) -> None:
        target = _origin_form(self.path)
        body = self._read_body(self.server.max_body_bytes)
        request = IncomingRequest(
            method=self.command,
            target=target,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        self._send(self.server.respond(request))

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
        limit = self.server.max_body_bytes
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
        self.connection.settimeout(self.server.read_timeout_seconds)  # a client that never reads
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
        path = loggable_path(self.path) if self.command else "-"
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


def loggable_path(target: str) -> str:
    """The target without its query (a presigned URL's credential), whether or not it parses."""
    return target.partition("?")[0][:200]


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
