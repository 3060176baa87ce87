"""A streamed HTTP answer: what a streaming handler returns instead of a whole API Gateway response dict.

The transport that carries it (`make serve`'s gateway locally, maas.apps.streaming_runtime on AWS) writes
the status and headers first, then each chunk as soon as the iterator yields it, and closes the iterator
when the client goes away. Errors before the first byte are an ordinary status and JSON body; after it, the
status is already on the wire, so they travel as one SSE error event before the stream ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SSE_MEDIA_TYPE = "text/event-stream"
SSE_DONE = b"data: [DONE]\n\n"


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


def sse_error_event(message: str, error_type: str, code: int | str | None = None) -> bytes:
    """The event that ends a stream which failed after its first byte, in OpenAI's error shape."""
    return sse_event({"error": {"message": message, "type": error_type, "param": None, "code": code}})
