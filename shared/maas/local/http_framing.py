"""HTTP/1.1 request framing as the local gateway reads it: strict, as a server behind no proxy must be.

RFC 9112: a body is framed by one Content-Length (repeats must agree) or by `Transfer-Encoding:
chunked` alone, never both; chunk sizes are plain hex digits; header lines http.client would join or
drop quietly are refused; a body over the limit is refused (413) before it is read. Every refusal is
a `FramingError` naming what was expected and what arrived, never echoing body bytes. Reads share one
deadline per request (`DeadlineReader`), so a client trickling bytes cannot hold a connection.
"""

from __future__ import annotations

import io
import math
import re
import socket
import time
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

MAX_CHUNK_LINE_BYTES = 4096
MAX_TRAILER_LINES = 100
MAX_TRAILER_LINE_BYTES = 8192

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
DECIMAL = re.compile(r"[0-9]+")
# Beyond this many significant digits a length is past any limit the gateway could have.
_MAX_LENGTH_DIGITS = 18


class FramingError(Exception):
    """The request's framing is refused: answered `status` with `detail`, then the connection closes,
    since where the next request would start is unknown."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ClientGoneError(Exception):
    """The connection ended in the middle of a request: nobody is left to answer."""


class DeadlineReader(io.RawIOBase):
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


def shown(text: str | bytes) -> str:
    """A framing token as it arrived, quoted and cut short; never body bytes."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    text = text.removesuffix("\n").removesuffix("\r")
    return repr(text if len(text) <= 24 else text[:24] + "...")


def origin_form(target: str) -> str:
    """The request target as /path?query: an absolute URL (which HTTP/1.1 servers must take) is reduced
    to its path and query; anything else ("*", "foo", a URL that does not parse) is refused."""
    if target.startswith("/"):
        return target
    try:
        parts = urlsplit(target)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise FramingError(400, f"request target: expected /path or an http(s) URL, got {shown(target)}")
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# ---- the body, as RFC 9112 section 6 frames it


def read_body(headers: Message, rfile: io.BufferedIOBase, *, http_version: str, limit: int) -> bytes:
    """The request's body, read off `rfile` as its headers frame it; FramingError past `limit` bytes."""
    check_header_lines(headers)
    transfer_encodings = headers.get_all("Transfer-Encoding") or []
    content_length = declared_content_length(headers)
    if transfer_encodings:
        if content_length is not None:
            # A front end and this server could each take a different one: request smuggling.
            raise FramingError(
                400, "Content-Length and Transfer-Encoding: expected at most one of them, got both"
            )
        if http_version == "HTTP/1.0":
            raise FramingError(400, "Transfer-Encoding: expected none in an HTTP/1.0 request, got one")
        codings = [coding.strip() for value in transfer_encodings for coding in value.split(",")]
        if [coding.lower() for coding in codings] != ["chunked"]:
            raise FramingError(
                400, f"Transfer-Encoding: expected chunked alone, got {shown(', '.join(codings))}"
            )
        return _read_chunked(rfile, limit)
    if content_length is None:
        return b""
    if content_length > limit:
        raise too_large(content_length, limit)
    return _read_exactly(rfile, content_length)


def check_header_lines(headers: Message) -> None:
    """Header lines http.client's parser would drop or join quietly are refused, since a framing header
    hidden that way ("Content-Length : 5") would leave its body to be read as the next request."""
    if headers.defects or headers.get_payload():
        raise FramingError(400, "headers: expected 'name: value' lines, got a line that is not one")
    for name, value in headers.items():
        if not _FIELD_NAME.fullmatch(name):
            raise FramingError(400, f"header name: expected a token, got {shown(name)}")
        if "\r" in value or "\n" in value:
            raise FramingError(400, f"header {name}: expected one line, got a folded value")


def declared_content_length(headers: Message) -> int | None:
    """The declared length; repeated headers or list members must all agree (RFC 9110 8.6)."""
    values = headers.get_all("Content-Length")
    if values is None:
        return None
    members = [member.strip() for value in values for member in value.split(",")]
    for member in members:
        if not DECIMAL.fullmatch(member):
            raise FramingError(
                400, f"Content-Length: expected a decimal number of bytes, got {shown(member)}"
            )
    if len({member.lstrip("0") for member in members}) > 1:
        raise FramingError(
            400, f"Content-Length: expected one length, got {len(set(members))} different ones"
        )
    digits = members[0].lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_LENGTH_DIGITS else 10**_MAX_LENGTH_DIGITS


def too_large(declared: int, limit: int) -> FramingError:
    shown_length = str(declared) if declared < 10**_MAX_LENGTH_DIGITS else f"over 10^{_MAX_LENGTH_DIGITS}"
    return FramingError(413, f"body: expected at most {limit} bytes, got a Content-Length of {shown_length}")


def _read_exactly(rfile: io.BufferedIOBase, count: int) -> bytes:
    data = rfile.read(count)
    if len(data) < count:
        raise ClientGoneError
    return data


def _read_line(rfile: io.BufferedIOBase, limit: int, what: str) -> bytes:
    line = rfile.readline(limit + 1)
    if len(line) > limit:
        raise FramingError(400, f"{what}: expected at most {limit} bytes ending in CRLF, got more")
    if not line.endswith(b"\n"):
        raise ClientGoneError
    if not line.endswith(b"\r\n"):
        raise FramingError(400, f"{what}: expected it to end in CRLF, got a bare LF")
    return line


def _read_chunked(rfile: io.BufferedIOBase, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = _read_line(rfile, MAX_CHUNK_LINE_BYTES, "chunk size line")
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            size_field = line.partition(b";")[0]
            raise FramingError(
                400,
                "chunk size: expected hexadecimal digits, then optional ;extensions and CRLF, "
                f"got {shown(size_field)}",
            )
        digits = match.group(1).lstrip(b"0")
        if not digits:
            _read_trailers(rfile)
            return b"".join(chunks)
        # Refused before the chunk is read: the sum, or a size past any limit, says enough.
        if len(digits) > _MAX_LENGTH_DIGITS or total + int(digits, 16) > limit:
            raise FramingError(413, f"body: expected at most {limit} bytes, got chunks adding up to more")
        size = int(digits, 16)
        chunks.append(_read_exactly(rfile, size))
        total += size
        if _read_exactly(rfile, 2) != b"\r\n":
            raise FramingError(400, f"chunk: expected CRLF after its {size} bytes, got other bytes")


def _read_trailers(rfile: io.BufferedIOBase) -> None:
    """Trailer fields are read and dropped: API Gateway hands a function no trailers."""
    for _ in range(MAX_TRAILER_LINES + 1):
        line = _read_line(rfile, MAX_TRAILER_LINE_BYTES, "trailer line")
        if line == b"\r\n":
            return
        if not _TRAILER_LINE.fullmatch(line):
            raise FramingError(400, "trailer: expected a 'name: value' line, got a line that is not one")
    raise FramingError(400, f"trailers: expected at most {MAX_TRAILER_LINES} lines, got more")
