"""A stand-in for the Lambda Runtime API (2018-06-01) on a local port: it hands out queued events from
/invocation/next and records every POST byte for byte, chunked framing and trailers included, so a test
can check exactly what a runtime sent Lambda."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.http import answer_json

# Long enough for any machine, short enough that a runtime that never asks again fails its test.
WAIT_SECONDS = 20.0
DEADLINE_MS = 4_102_444_800_000  # 2100-01-01: never past
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:maas-dev-GenerateFunction"


@dataclass
class Posted:
    """One POST as it arrived: the raw bytes after the headers, and those bytes decoded."""

    path: str
    headers: list[tuple[str, str]]
    raw: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def trailer(self, name: str) -> str | None:
        return next((value for key, value in self.trailers if key.lower() == name.lower()), None)


class RuntimeApiStandIn:
    """Queue events with `invoke`; read what came back in `posted`. `chunk_arrived` is notified whenever a
    body chunk arrives or a POST is answered, so a producer can wait until its previous chunk reached
    Lambda, and a test until a runtime in another process has answered."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._events: queue.Queue[tuple[str, bytes, dict[str, str]]] = queue.Queue()
        self.posted: list[Posted] = []
        self.chunks_received = 0
        self.answered = 0
        # GET /runtime/restore/next calls: a SnapStart runtime's wait for the snapshot.
        self.restore_requests = 0
        self.chunk_arrived = threading.Condition()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def invoke(self, request_id: str, event: Any, **headers: str) -> None:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        self._events.put((request_id, body, headers))

    def wait_for_chunks(self, count: int) -> bool:
        """Whether `count` body chunks (the prelude's included) have arrived, waiting for them."""
        with self.chunk_arrived:
            return self.chunk_arrived.wait_for(lambda: self.chunks_received >= count, WAIT_SECONDS)

    def wait_for_posts(self, count: int) -> bool:
        """Whether `count` POSTs have been answered, waiting for them."""
        with self.chunk_arrived:
            return self.chunk_arrived.wait_for(lambda: self.answered >= count, WAIT_SECONDS)

    def record_answered(self) -> None:
        with self.chunk_arrived:
            self.answered += 1
            self.chunk_arrived.notify_all()

    def next_event(self) -> tuple[str, bytes, dict[str, str]]:
        return self._events.get(timeout=WAIT_SECONDS)

    def record_chunk(self) -> None:
        with self.chunk_arrived:
            self.chunks_received += 1
            self.chunk_arrived.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        if self.path.endswith("/runtime/restore/next"):
            self.server.stand_in.restore_requests += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self.path.endswith("/runtime/invocation/next"):
            answer_json(self, 404, {"errorMessage": "unknown path"})
            return
        request_id, body, extra = self.server.stand_in.next_event()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(DEADLINE_MS))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        posted = Posted(self.path, list(self.headers.items()))
        self.server.stand_in.posted.append(posted)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            self._read_chunked(posted)
        else:
            posted.raw = posted.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer_json(self, 202, {"status": "OK"})
        self.server.stand_in.record_answered()

    def _read_chunked(self, posted: Posted) -> None:
        while True:
            size_line = self.rfile.readline()
            posted.raw += size_line
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            data = self.rfile.read(size + 2)
            posted.raw += data
            posted.chunks.append(data[:-2])
            self.server.stand_in.record_chunk()
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            posted.raw += line
            name, _, value = line.decode("ascii").partition(":")
            posted.trailers.append((name.strip(), value.strip()))
        posted.raw += b"\r\n"
        posted.body = b"".join(posted.chunks)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stand_in: RuntimeApiStandIn


@contextmanager
def runtime_api_stand_in() -> Iterator[RuntimeApiStandIn]:
    """A stand-in serving on a free local port until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stand_in = RuntimeApiStandIn(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
