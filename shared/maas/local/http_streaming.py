"""A streamed answer on one of the local gateway's connections: status and headers at once, then each chunk
the moment the producer yields it.

HTTP/1.1 clients get `Transfer-Encoding: chunked`, one chunk per write straight to the socket (the handler
has no write buffer, and TCP_NODELAY keeps the kernel from holding small writes back); HTTP/1.0 clients get
the bytes unframed, ended by closing the connection. An empty chunk is skipped, since it would read as the
end of the body. A client that goes away (a failed write, or one not read within the socket's timeout)
ends the stream, and the producer is closed however the stream ends, so a decoding loop stops too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler

logger = logging.getLogger(__name__)

# Framing headers are the gateway's to write, whatever the function put in its answer.
_FRAMING_HEADERS = frozenset({"content-length", "connection", "transfer-encoding"})


def send_streamed(
    handler: BaseHTTPRequestHandler,
    status: int,
    headers: Sequence[tuple[str, str]],
    chunks: Iterator[bytes],
    *,
    bodyless: bool,
) -> None:
    """Write the answer on `handler`'s connection (its socket timeout bounds each write); `bodyless`
    answers (HEAD, 204, 304) send the head only."""
    try:
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in _FRAMING_HEADERS:
                handler.send_header(name, value)
        chunked = not bodyless and handler.request_version == "HTTP/1.1"
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        elif not bodyless:
            handler.close_connection = True  # an HTTP/1.0 body ends where the connection does
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if bodyless:
            return
        for chunk in chunks:
            if chunk:
                handler.wfile.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
    except OSError as gone:
        handler.close_connection = True
        logger.info("%s left mid-stream (%s)", handler.address_string(), type(gone).__name__)
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
