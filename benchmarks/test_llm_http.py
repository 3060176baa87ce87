"""Text generation over HTTP: `make serve`'s local stack in a process of its own
(benchmarks.llm_stack_process) against the raw onnxruntime loop in this one, interleaved call by call, on
int8.

Three clients of the same chat (temperature 0, MAX_TOKENS tokens), each its own interleaved pair:
- HTTP: POST /openai/v1/chat/completions with http.client, the whole JSON answer;
- SSE: the same with `stream: true` (and include_usage), read event by event as the gateway sends them;
- SDK: the openai SDK's `chat.completions.create(stream=True)` at <stack>/openai/v1.
Each is measured as tokens per second of the whole call (prefill included, as on the raw side), and must
produce the raw loop's text. The streamed clients also time the first event carrying text, from sending
the request; against the raw loop's prefill of the same prompt that is the time to first token.

The raw loop has its own session on the same graph with the function's options (one intra-op thread per
usable CPU, no spinning); the stack's function is idle while the raw loop runs and the other way round.

Targets: each client >= 0.8x the raw loop's tokens/s; first token over SSE <= prefill + 50 ms.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
from tests.support.paths import ROOT
from tokenizers import Tokenizer

from benchmarks.harness import BenchError, BenchResults, isolated_env
from benchmarks.llm_models import BenchLlm, LlmZoo
from benchmarks.llm_workload import (
    CHAT_PATH,
    OK,
    RAW_LOOP_NOTE,
    chat_body,
    generation_of,
    has_content,
    load_average,
    prompt_ids,
    raw_greedy,
    raw_session,
)
from benchmarks.store import BenchStore
from benchmarks.timing import interleaved
from maas.generation.reference import ReferenceRun
from maas.runtime import usable_cpus

CASE = "llm over http"
STACK = "benchmarks.llm_stack_process"
PAIRS = 5
MIN_RATIO = 0.8
FIRST_TOKEN_ALLOWANCE_MS = 50.0
STACK_START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 300.0
MS = 1000.0


@dataclass(frozen=True, slots=True)
class Served:
    """One answer as a client saw it: its text, token count, and when its first text arrived."""

    text: str
    completion_tokens: int
    first_text_s: float | None = None


Client = Callable[[str, dict[str, Any]], Served]


@contextmanager
def local_stack(store: BenchStore) -> Iterator[str]:
    """The local stack serving template.yaml on the bench store, in a child process; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="maas-bench-stack-") as folder:
        url_file, log_path = Path(folder) / "url", Path(folder) / "log"
        with log_path.open("wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", STACK, str(url_file)],
                cwd=ROOT,
                env=isolated_env(store.function_env()),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield _stack_url(child, url_file, log_path)
            finally:
                child.terminate()
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def _stack_url(child: subprocess.Popen[bytes], url_file: Path, log_path: Path) -> str:
    deadline = time.monotonic() + STACK_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if url_file.is_file() and url_file.read_text():
            return url_file.read_text()
        if child.poll() is not None:
            break
        time.sleep(0.2)
    tail = log_path.read_bytes()[-4000:].decode(errors="replace")
    raise BenchError(f"{STACK}: expected the stack's URL within {STACK_START_TIMEOUT_S:.0f} s, got:\n{tail}")


def _post(url: str, body: dict[str, Any]) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    connection = http.client.HTTPConnection(host, parts.port, timeout=REQUEST_TIMEOUT_S)
    connection.request("POST", CHAT_PATH, json.dumps(body), {"content-type": "application/json"})
    response = connection.getresponse()
    if response.status != OK:
        raise BenchError(f"POST {CHAT_PATH}: expected 200, got {response.status}: {response.read()[:500]!r}")
    return response


def http_whole(url: str, body: dict[str, Any]) -> Served:
    answer = json.loads(_post(url, body).read())
    return Served(answer["choices"][0]["message"]["content"], answer["usage"]["completion_tokens"])


def http_sse(url: str, body: dict[str, Any]) -> Served:
    started = time.perf_counter()
    response = _post(url, {**body, "stream": True, "stream_options": {"include_usage": True}})
    first: float | None = None
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    for line in response:
        data = line.strip().removeprefix(b"data: ")
        if not data or data == b"[DONE]":
            continue
        document = json.loads(data)
        if first is None and has_content([document]):
            first = time.perf_counter() - started
        parts.extend(choice["delta"].get("content") or "" for choice in document.get("choices", []))
        usage = document.get("usage") or usage
    if usage is None:
        raise BenchError("SSE chat: expected a final usage chunk (include_usage), got none")
    return Served("".join(parts), usage["completion_tokens"], first)


def sdk_stream(url: str, body: dict[str, Any]) -> Served:
    client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0)
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    tokens = 0
    for chunk in client.chat.completions.create(
        model=body["model"],
        messages=body["messages"],
        max_tokens=body["max_tokens"],
        temperature=body["temperature"],
        stream=True,
        stream_options={"include_usage": True},
    ):
        for choice in chunk.choices:
            if choice.delta.content:
                if first is None:
                    first = time.perf_counter() - started
                parts.append(choice.delta.content)
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    client.close()
    return Served("".join(parts), tokens, first)


CLIENTS: dict[str, tuple[Client, str]] = {
    "HTTP": (http_whole, "POST with http.client, the whole JSON answer"),
    "SSE": (http_sse, "POST with stream: true and include_usage, read event by event with http.client"),
    "SDK": (sdk_stream, "openai SDK, chat.completions.create(stream=True, include_usage)"),
}


def test_clients_over_http_against_raw_loop(
    bench_store: BenchStore, bench_llms: LlmZoo, bench_results: BenchResults
) -> None:
    llm = bench_llms.published(bench_store, "int8")
    generation = generation_of(llm.manifest)
    ids = prompt_ids(llm.folder, generation)
    session = raw_session(llm.folder, usable_cpus())
    tokenizer = Tokenizer.from_file(str(llm.folder / generation.tokenizer_file))
    runs: list[ReferenceRun] = []

    def raw() -> None:
        runs.append(raw_greedy(llm.folder, session, ids, generation))

    body = chat_body(llm.manifest.name)
    with local_stack(bench_store) as url:
        http_whole(url, body)  # the first request loads and warms the model in the stack
        for client_name, (client, how) in CLIENTS.items():
            answers: list[Served] = []

            def served(client: Client = client, answers: list[Served] = answers) -> None:
                answers.append(client(url, body))

            load_before = load_average()
            client_s, raw_s = interleaved(served, raw, repeats=PAIRS, warmup=1)
            pair_runs = runs[-PAIRS:]
            for answer, run in zip(answers[-PAIRS:], pair_runs, strict=True):
                _check_same_text(client_name, answer, run, tokenizer)
            _record_client(
                bench_results,
                llm,
                client_name,
                how,
                client_s,
                raw_s,
                answers[-PAIRS:],
                pair_runs,
                {
                    "prompt_tokens": len(ids),
                    "load_average_before": load_before,
                    "load_average_after": load_average(),
                },
            )


def _check_same_text(client: str, answer: Served, run: ReferenceRun, tokenizer: Tokenizer) -> None:
    expected = tokenizer.decode(run.tokens)
    if answer.text != expected or answer.completion_tokens != len(run.tokens):
        raise BenchError(
            f"{client}: expected the raw loop's {len(run.tokens)} tokens {expected[:60]!r}..., got "
            f"{answer.completion_tokens} tokens {answer.text[:60]!r}..."
        )


def _record_client(
    results: BenchResults,
    llm: BenchLlm,
    client: str,
    how: str,
    client_s: list[float],
    raw_s: list[float],
    answers: list[Served],
    runs: list[ReferenceRun],
    context: dict[str, Any],
) -> None:
    tokens = len(runs[-1].tokens)
    ratios = [r / c for c, r in zip(client_s, raw_s, strict=True)]
    prefix = f"int8, {client}"
    results.record(
        CASE,
        f"{prefix}: tokens/s (chat, temperature 0, prefill included)",
        [tokens / s for s in client_s],
        "tok/s",
        details={"client": how, "completion_tokens": tokens},
    )
    results.record(
        CASE,
        f"{prefix}: tokens/s / raw loop tokens/s",
        ratios,
        "x",
        target=f"≥ {MIN_RATIO}x",
        met=statistics.median(ratios) >= MIN_RATIO,
        details={
            "client_ms_median": round(statistics.median(client_s) * MS, 1),
            "raw_ms_median": round(statistics.median(raw_s) * MS, 1),
            "raw_tok_s_median": round(tokens / statistics.median(raw_s), 1),
            "baseline": RAW_LOOP_NOTE + "; its own session in the measuring process",
            "server": "the local stack (LocalStack over template.yaml, as make serve) in a child process",
            "pairs": PAIRS,
            **context,
        },
    )
    firsts = [a.first_text_s for a in answers]
    if any(first is None for first in firsts):
        return
    first_ms = [f * MS for f in firsts if f is not None]
    excess_ms = [f - r.prefill_seconds * MS for f, r in zip(first_ms, runs, strict=True)]
    streamed = statistics.median(first_ms) < statistics.median(client_s) * MS / 2
    target, met = None, None
    if client == "SSE":
        target = f"≤ prefill + {FIRST_TOKEN_ALLOWANCE_MS:.0f} ms"
        met = statistics.median(excess_ms) <= FIRST_TOKEN_ALLOWANCE_MS
    results.record(
        CASE,
        f"{prefix}: time to first token - raw prefill",
        excess_ms,
        "ms",
        target=target,
        met=met,
        details={
            "first_token_ms_median": round(statistics.median(first_ms), 1),
            "raw_prefill_ms_median": round(statistics.median(r.prefill_seconds for r in runs) * MS, 1),
            "whole_answer_ms_median": round(statistics.median(client_s) * MS, 1),
            "streamed_token_by_token": streamed,
            "from": "sending the request to the first event carrying text",
        },
    )
