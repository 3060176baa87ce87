"""Acceptance: Triton's generate extension and the streamed routes over plain HTTP against the local stack.

Given the tiny test decoder published as tiny-llm v1 into the stack's embedded store, /generate answers one
JSON object and /generate_stream a Server-Sent Event per decoded piece, read with the standard library. On
the raw socket, a streamed answer comes chunk by chunk as the gateway writes it, one event per HTTP chunk,
and a generation that fails after its first event ends its stream with an SSE error event, not a hang.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from tokenizers import Tokenizer

from maas.local import LocalStack
from maas.registry import Manifest
from tests.support.http import send
from tests.support.llm import TINY_LLM_NAME, publish_tiny_llm, tiny_llm_draft, tiny_llm_folder
from tests.support.openai_lambda import DONE, sse_data

MODEL = TINY_LLM_NAME
PROMPT = "The capital of France is"
GREEDY = {"text_input": PROMPT, "parameters": {"max_tokens": 8, "temperature": 0}}
JSON = "application/json"
# A version whose manifest claims four times the context its graph has: its rotary tables end at the
# graph's 256 positions, so onnxruntime fails the first step past them, after the stream has begun.
OVERSTATED = "overstated-context"
OVERSTATED_CONTEXT = 1024


@dataclass(frozen=True)
class Served:
    stack: LocalStack
    manifest: Manifest

    def url(self, path: str) -> str:
        return f"{self.stack.url}{path}"


@pytest.fixture(scope="module")
def served(isolated_module_env: pytest.MonkeyPatch) -> Iterator[Served]:
    with LocalStack(port=0, embedded=True) as stack:
        yield Served(stack, publish_tiny_llm(stack.registry))


def post_json(url: str, body: dict[str, Any]) -> tuple[int, str, str]:
    """Status, Content-Type and text of one POST made with urllib, as any HTTP client would."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": JSON}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


# ---- Triton's generate extension


def test_generate_answers_one_json_object(served: Served) -> None:
    status, content_type, text = post_json(served.url(f"/v2/models/{MODEL}/generate"), GREEDY)

    assert (status, content_type) == (200, JSON)
    answer = json.loads(text)
    assert (answer["model_name"], answer["model_version"]) == (MODEL, "1")
    assert isinstance(answer["text_output"], str)
    assert answer["completion_tokens"] + (answer["finish_reason"] == "stop") >= 1
    assert answer["finish_reason"] in ("stop", "length")


def test_generate_stream_sends_several_events_that_add_up_to_the_whole_answer(served: Served) -> None:
    _, _, whole = post_json(served.url(f"/v2/models/{MODEL}/versions/1/generate"), GREEDY)

    status, content_type, text = post_json(served.url(f"/v2/models/{MODEL}/generate_stream"), GREEDY)

    assert (status, content_type) == (200, "text/event-stream")
    *pieces, last = [json.loads(data) for data in sse_data(text)]
    assert len(pieces) > 1, "expected the text in several events"
    expected = json.loads(whole)
    assert "".join(piece["text_output"] for piece in pieces) == expected["text_output"]
    assert last == {**expected, "text_output": ""}


# ---- the raw socket


@dataclass(frozen=True)
class RawAnswer:
    """What arrived on the socket: the head, each HTTP chunk's payload, and how many reads brought it."""

    head: str
    chunks: list[bytes]
    reads: int
    first_read_ended_the_body: bool

    @property
    def status(self) -> int:
        return int(self.head.split(" ", 2)[1])

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def post_raw(served: Served, path: str, body: dict[str, Any]) -> RawAnswer:
    """One HTTP/1.1 POST written and read on a bare socket, its chunked body unframed by hand."""
    address = urlsplit(served.stack.url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: {JSON}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    reads: list[bytes] = []
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(request)
        while piece := connection.recv(65536):
            reads.append(piece)
    received = b"".join(reads)
    head, _, framed = received.partition(b"\r\n\r\n")
    chunks = []
    while True:
        size_line, _, rest = framed.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n", "expected each chunk to end with CRLF"
        framed = rest[size + 2 :]
    return RawAnswer(head.decode(), chunks, len(reads), reads[0].endswith(b"0\r\n\r\n"))


def test_a_stream_arrives_event_by_event_not_as_one_body(served: Served) -> None:
    # Four choices of 200 tokens: hundreds of events, each written to the socket as it is produced.
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 200, "temperature": 0, "n": 4, "stream": True}

    answer = post_raw(served, "/openai/v1/completions", body)

    assert answer.status == 200
    assert answer.header("Transfer-Encoding") == "chunked"
    assert answer.header("Content-Length") is None
    # One HTTP chunk per event: the gateway writes each as the function yields it, buffering nothing.
    assert all(chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") for chunk in answer.chunks)
    assert b"".join(answer.chunks).count(b"\n\n") == len(answer.chunks) > 4
    assert answer.chunks[-1] == f"data: {DONE}\n\n".encode()
    # The first read returned what had been written by then: the start of the stream, not all of it.
    assert answer.reads > 1
    assert not answer.first_read_ended_the_body


@pytest.fixture(scope="module")
def overstated(served: Served) -> Manifest:
    draft = tiny_llm_draft()
    assert draft.generation is not None
    generation = draft.generation.model_copy(update={"context_length": OVERSTATED_CONTEXT})
    folder = tiny_llm_folder()
    files = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    return served.stack.registry.publish(
        OVERSTATED, files, draft.model_copy(update={"generation": generation})
    )


INTERNAL_ERROR = "internal error; see the function's logs"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "/openai/v1/completions",
            {"message": INTERNAL_ERROR, "type": "server_error", "param": None, "code": None},
        ),
        # Triton's routes keep maas's own error shape, in the stream as in a status answer.
        (f"/v2/models/{OVERSTATED}/generate_stream", INTERNAL_ERROR),
    ],
)
def test_a_generation_that_fails_mid_stream_ends_with_an_sse_error_event(
    served: Served, overstated: Manifest, path: str, error: object
) -> None:
    text = Tokenizer.from_file(str(tiny_llm_folder() / "tokenizer.json"))
    # A prompt the graph can prefill (under its real 256 positions) whose continuation runs past them.
    prompt = text.decode(text.encode(" ".join(["word"] * 400), add_special_tokens=False).ids[:240])
    parameters = {"max_tokens": 100, "temperature": 0}
    body = (
        {"model": OVERSTATED, "prompt": prompt, "stream": True, **parameters}
        if path.startswith("/openai/")
        else {"text_input": prompt, "parameters": parameters}
    )

    answer = post_raw(served, path, body)

    assert answer.status == 200
    *pieces, last = [json.loads(chunk.removeprefix(b"data: ")) for chunk in answer.chunks]
    assert len(pieces) > 1, "expected text events before the failure"
    assert all("error" not in piece for piece in pieces)
    assert last == {"error": error}
    # The stream was closed, not left hanging, and the stack serves on.
    assert send("GET", served.url("/v2/health/live")).status == 200
