"""A streamed HTTP answer: what a streaming handler returns instead of a whole API Gateway response dict.

The transport that carries it (`make serve`'s gateway locally, maas.apps.streaming_runtime on AWS) writes
the status and headers first, then each chunk as soon as the iterator yields it, and closes the iterator
when the client goes away. Errors before the first byte are an ordinary status and JSON body; after it, the
status is already on the wire, so they travel as one SSE error event before the stream ends.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from maas.observability import logger

SSE_MEDIA_TYPE = "text/event-stream"
SSE_DONE = b"data: [DONE]\n\n"
# The module attribute a streaming function defines beside its lambda_handler (same module, same file).
STREAM_HANDLER = "stream_handler"
INTERNAL_ERROR = "internal error; see the function's logs"
SERVER_ERROR_TYPE = "server_error"


@dataclass(frozen=True, slots=True)
class HttpStream:
    """A streamed HTTP answer, what a streaming handler returns: status and headers, then body chunks.

    `chunks` is consumed once, by the transport. A generator is closed (GeneratorExit inside it) when the
    client disconnects, so a decoding loop stops spending compute on nobody."""

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]


def sse_event(data: Mapping[str, Any] | str) -> bytes:
    """One Server-Sent Event: `data: <json>` and the blank line that ends it.

    A str is sent as is (the `[DONE]` sentinel); it must not contain a newline, which would split the
    event. JSON is compact and ASCII-only so a chunk never ends inside a multi-byte character."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    if "\n" in text or "\r" in text:
        raise ValueError("an SSE data line cannot contain a line break")
    return f"data: {text}\n\n".encode()


def error_document(message: str, error_type: str, code: int | str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape, {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def sse_error_event(message: str, error_type: str, code: int | str | None = None) -> bytes:
    """The event that ends a stream which failed after its first byte, in OpenAI's error shape."""
    return sse_event(error_document(message, error_type, code))


class ChunksUntilError:
    """A stream's chunks as a transport writes them: bytes, until the producer fails; its exception then
    becomes one SSE error event that ends the stream (the status is already on the wire), and is kept in
    `error` for the transport to report as well (the AWS runtime's error trailers).

    The exception's type and traceback are logged, never its text, which can quote the payload."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._finished = False
        self.error: Exception | None = None

    def __iter__(self) -> ChunksUntilError:
        return self

    def __next__(self) -> bytes:
        if self._finished:
            raise StopIteration
        try:
            chunk = next(self._chunks)
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"a stream chunk must be bytes, got {type(chunk).__name__}")
        except StopIteration:
            self._finished = True
            raise
        except Exception as exc:
            self._finished = True
            self.error = exc
            self.close()
            logger.error(
                "the stream failed after its first byte",
                extra={
                    "error_type": type(exc).__name__,
                    "traceback": "".join(traceback.format_tb(exc.__traceback__)),
                },
            )
            return sse_error_event(INTERNAL_ERROR, SERVER_ERROR_TYPE)
        return bytes(chunk)

    def close(self) -> None:
        """Stop the producer: a generator gets GeneratorExit where it waits, and its `finally` runs."""
        self._finished = True
        close = getattr(self._chunks, "close", None)
        if callable(close):
            close()
