"""A job input's bytes as they come from the object store: cut into lines, or read in exact amounts.

Both read a chunk at a time, so a file of any size streams through a bounded amount of memory.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from maas.service.job_rows import LINE_FIELD, MalformedJobInput

# What one read from the object store asks for; lines longer than a chunk are joined across reads.
READ_CHUNK_BYTES = 1024 * 1024
UTF8_BOM = codecs.BOM_UTF8


class ByteStream(Protocol):
    """What a botocore StreamingBody offers, and a file opened in binary mode too."""

    def read(self, amt: int | None = ..., /) -> bytes: ...


@dataclass(slots=True)
class StreamPosition:
    """How far a reader of the stream got: the lines (npy: rows) it gave, and the stream's bytes up to the
    end of the last of them (its newline included). A shard reports with it where its records ended."""

    lines: int = 0
    bytes: int = 0


def iter_lines(
    stream: ByteStream,
    max_line_bytes: int,
    chunk_bytes: int = READ_CHUNK_BYTES,
    *,
    strip_bom: bool = True,
    position: StreamPosition | None = None,
) -> Iterator[bytes]:
    """Lines without their endings (\\n or \\r\\n), read chunk by chunk; a final line needs no newline.

    A UTF-8 byte-order mark is dropped only at the start of a file (`strip_bom`: the stream starts at byte 0).
    `position` is kept up to date as each line is given. A line longer than `max_line_bytes` (as given:
    without its ending) fails the job: holding it would break the streaming promise. Every line is held to
    it, the last one too, wherever the reads fall, so a shard (whose reads start at its own first byte)
    fails on the same line as the whole file does."""
    pending = b""
    bom_checked = not strip_bom
    line_number = 0
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        pending += chunk
        if not bom_checked and len(pending) >= len(UTF8_BOM):
            if pending.startswith(UTF8_BOM):
                pending = pending[len(UTF8_BOM) :]
                if position is not None:
                    position.bytes += len(UTF8_BOM)
            bom_checked = True
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            line_number += 1
            given = _bounded(line.removesuffix(b"\r"), line_number, max_line_bytes)
            if position is not None:
                position.lines = line_number
                position.bytes += len(line) + 1
            yield given
        # The unfinished line (the last one, when the stream ends) is held to the bound as it grows: once it
        # is too long, whatever ends it, the rest need not be read.
        _bounded(pending.removesuffix(b"\r"), line_number + 1, max_line_bytes)
    if pending:
        if position is not None:
            position.lines = line_number + 1
            position.bytes += len(pending)
        yield pending.removesuffix(b"\r")


def _bounded(line: bytes, number: int, max_line_bytes: int) -> bytes:
    if len(line) > max_line_bytes:
        raise MalformedJobInput.at_line(
            f"input: line {LINE_FIELD} is longer than {max_line_bytes} bytes (MAAS_MAX_REQUEST_BYTES)", number
        )
    return line


class ExactReader:
    """read(n) that returns n bytes unless the stream ends: a network body may return fewer per call."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return self._stream.read()
        parts: list[bytes] = []
        remaining = size
        while remaining > 0:
            part = self._stream.read(remaining)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)
