"""Text generation, warm, in one process: the generate function's handler against the raw onnxruntime loop on
the very session the function loaded, interleaved call by call.

Decode speed: a chat completion (an HTTP API v2 event into functions/generate/app.py's lambda_handler,
temperature 0, MAX_TOKENS tokens) against the raw loop on the same prompt ids, as tokens per second of the
whole call (prefill included on both sides, the same prompt and token count, so the ratio is per
generated token). Both produce the same text; a run where they differ is an error.

Time to first token: the same chat streamed through stream_handler, from the call to the first event
carrying text, against the raw loop's prefill of the same prompt. Target: at most the prefill + 50 ms.

Targets: handler tokens/s >= 0.9x the raw loop's; first token <= prefill + 50 ms.
"""

from __future__ import annotations

import json
import statistics
import time
from types import ModuleType
from typing import Any

import pytest

from benchmarks.harness import BenchError, BenchResults
from benchmarks.llm_models import BenchLlm, LlmZoo
from benchmarks.llm_workload import (
    MESSAGES,
    OK,
    RAW_LOOP_NOTE,
    chat_event,
    has_content,
    load_average,
    raw_greedy,
    sse_documents,
)
from benchmarks.store import BenchStore
from benchmarks.timing import interleaved
from maas.generation import TextGenerator
from maas.generation.reference import ReferenceRun
from maas.runtime import usable_cpus

CASE = "llm decode"
PAIRS = 6
MIN_HANDLER_RATIO = 0.9
# A first token streams after the prefill and at most one step more (the detokenizer may hold one back).
FIRST_TOKEN_ALLOWANCE_MS = 50.0
FIRST_TOKEN_MAX_TOKENS = 8
MS = 1000.0

# The handler prints an EMF metric line per call, as on Lambda's log pipe.
pytestmark = pytest.mark.usefixtures("stdout_to_devnull")


def answered(function: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = function.lambda_handler(event, None)
    if response.get("statusCode") != OK:
        raise BenchError(
            f"chat completion: expected 200, got {response.get('statusCode')}: {response['body']}"
        )
    document: dict[str, Any] = json.loads(response["body"])
    return document


def loaded_generator(function: ModuleType, llm: BenchLlm) -> TextGenerator:
    generator: TextGenerator | None = function.app.service.loader.cache.peek(
        llm.manifest.name, llm.manifest.version
    )
    if generator is None:
        raise BenchError(f"{llm.manifest.name}: expected it loaded after a request")
    return generator


def check_same_text(
    llm: BenchLlm, generator: TextGenerator, answer: dict[str, Any], run: ReferenceRun
) -> None:
    served = answer["choices"][0]["message"]["content"]
    expected = generator.decode(run.tokens)
    if served != expected or answer["usage"]["completion_tokens"] != len(run.tokens):
        raise BenchError(
            f"{llm.manifest.name}: expected the handler's temperature-0 answer to be the raw loop's "
            f"{len(run.tokens)} tokens {expected[:60]!r}..., got {answer['usage']['completion_tokens']} "
            f"tokens {served[:60]!r}..."
        )


def first_token_seconds(function: ModuleType, event: dict[str, Any]) -> float:
    """Seconds from calling stream_handler to the first event that carries text; the stream is drained."""
    started = time.perf_counter()
    stream = function.stream_handler(event, None)
    if stream.status != OK:
        raise BenchError(f"streamed chat: expected 200, got {stream.status}")
    first: float | None = None
    for chunk in stream.chunks:
        if first is None and has_content(sse_documents(chunk)):
            first = time.perf_counter() - started
    if first is None:
        raise BenchError("streamed chat: expected an event carrying text, got none")
    return first


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_handler_decode_against_raw_loop(
    precision: str,
    generate_function: ModuleType,
    bench_store: BenchStore,
    bench_llms: LlmZoo,
    bench_results: BenchResults,
) -> None:
    llm = bench_llms.published(bench_store, precision)
    name = llm.manifest.name
    event = chat_event(name)
    answered(generate_function, event)  # the first request loads and warms the model
    generator = loaded_generator(generate_function, llm)
    ids = generator.encode(generator.render_chat(MESSAGES))
    answers: list[dict[str, Any]] = []
    runs: list[ReferenceRun] = []

    def handler() -> None:
        answers.append(answered(generate_function, event))

    def raw() -> None:
        runs.append(raw_greedy(llm.folder, generator.decoder.session, ids, generator.generation))

    load_before = load_average()
    handler_s, raw_s = interleaved(handler, raw, repeats=PAIRS, warmup=1)
    load_after = load_average()
    for answer, run in zip(answers, runs, strict=True):
        check_same_text(llm, generator, answer, run)
    tokens = len(runs[-1].tokens)
    handler_tps = [tokens / s for s in handler_s]
    raw_tps = [tokens / s for s in raw_s]
    ratios = [r / h for h, r in zip(handler_s, raw_s, strict=True)]
    timed_runs = runs[-PAIRS:]
    details: dict[str, Any] = {
        "model": f"{name} v{llm.manifest.version}",
        "prompt_tokens": len(ids),
        "completion_tokens": tokens,
        "intra_op_threads": usable_cpus(),
        "pairs": PAIRS,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    bench_results.record(
        CASE,
        f"{precision}: tokens/s through the handler (chat, temperature 0, prefill included)",
        handler_tps,
        "tok/s",
        details=details,
    )
    bench_results.record(
        CASE,
        f"{precision}: tokens/s of the raw onnxruntime loop (prefill included)",
        raw_tps,
        "tok/s",
        details={
            "baseline": RAW_LOOP_NOTE + "; on the session the function loaded",
            "prefill_ms_median": round(statistics.median(r.prefill_seconds for r in timed_runs) * MS, 1),
            "decode_only_tok_s_median": round(
                statistics.median(r.decode_tokens_per_second for r in timed_runs), 1
            ),
        },
    )
    bench_results.record(
        CASE,
        f"{precision}: handler tokens/s / raw loop tokens/s",
        ratios,
        "x",
        target=f"≥ {MIN_HANDLER_RATIO}x",
        met=statistics.median(ratios) >= MIN_HANDLER_RATIO,
        details={
            "handler_ms_median": round(statistics.median(handler_s) * MS, 1),
            "raw_ms_median": round(statistics.median(raw_s) * MS, 1),
            "overhead_ms_per_token": round(
                (statistics.median(handler_s) - statistics.median(raw_s)) * MS / tokens, 2
            ),
            "same_text": "every pair's texts compared: the handler's answer is the raw loop's tokens decoded",
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
    )


def test_first_token_against_raw_prefill(
    generate_function: ModuleType, bench_store: BenchStore, bench_llms: LlmZoo, bench_results: BenchResults
) -> None:
    llm = bench_llms.published(bench_store, "int8")
    event = chat_event(llm.manifest.name, FIRST_TOKEN_MAX_TOKENS, stream=True)
    first_token_seconds(generate_function, event)  # loads and warms the model
    generator = loaded_generator(generate_function, llm)
    ids = generator.encode(generator.render_chat(MESSAGES))
    firsts: list[float] = []
    prefills: list[float] = []

    def streamed() -> None:
        firsts.append(first_token_seconds(generate_function, event))

    def raw() -> None:
        run = raw_greedy(llm.folder, generator.decoder.session, ids, generator.generation, max_tokens=1)
        prefills.append(run.prefill_seconds)

    load_before = load_average()
    interleaved(streamed, raw, repeats=PAIRS, warmup=1)
    firsts, prefills = firsts[-PAIRS:], prefills[-PAIRS:]
    excess_ms = [(f - p) * MS for f, p in zip(firsts, prefills, strict=True)]
    bench_results.record(
        CASE,
        "int8: time to first token through stream_handler (chat, streamed)",
        [f * MS for f in firsts],
        "ms",
        details={
            "from": "calling stream_handler to the first SSE event carrying text",
            "prompt_tokens": len(ids),
        },
    )
    bench_results.record(
        CASE,
        "int8: raw loop prefill of the same prompt",
        [p * MS for p in prefills],
        "ms",
        details={"baseline": RAW_LOOP_NOTE + "; on the session the function loaded"},
    )
    bench_results.record(
        CASE,
        "int8: time to first token - raw prefill (stream_handler)",
        excess_ms,
        "ms",
        target=f"≤ prefill + {FIRST_TOKEN_ALLOWANCE_MS:.0f} ms",
        met=statistics.median(excess_ms) <= FIRST_TOKEN_ALLOWANCE_MS,
        details={"load_average_before": load_before, "load_average_after": load_average()},
    )
