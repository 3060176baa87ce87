"""Text request memory: the worst text request the limits allow, through the real infer handler, for each
text model, in a fresh process with the model loaded and warm.

The worst requests within MAAS_MAX_REQUEST_BYTES (6 MiB, Lambda's payload limit) as V2 JSON:
- the most elements: MAAS_MAX_BATCH (4,096) texts, each as long as the body allows (about 1.5 KB of
  `word word ...`, more tokens than either model reads, so every row is as wide as max_length);
- the largest elements: as many texts of MAAS_MAX_STRING_BYTES (256 KiB) as fit (23), as words and as one
  unbroken word (no prefix settles early: each text is tokenized whole).
Each is answered three times in a row, under the default time budget (MAAS_REQUEST_TIMEOUT, 25 s): MiniLM
cannot read 4,096 texts of 256 tokens in that on a CPU and answers 504, having run for the whole budget,
which is what a deployed function does too. Targets: the request's peak at most PEAK_GROWTH_MB over the
warm function's resident memory, and what stays resident after it within RETAINED_MB of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.support.paths import ROOT

from benchmarks.harness import MIB, BenchError, BenchResults, isolated_env, run_isolated
from benchmarks.workloads import json_infer_event
from maas.config import DEFAULT_MAX_BATCH, DEFAULT_MAX_STRING_BYTES, LAMBDA_PAYLOAD_BYTES

if TYPE_CHECKING:
    from benchmarks.store import BenchStore, ModelZoo

CASE = "text request memory"
CHILD = "benchmarks.text_memory_process"
RECIPES = ("text-bert", "minilm-embed")
REPEATS = 3
CHILD_TIMEOUT_S = 600.0
PEAK_GROWTH_MB = 256.0
RETAINED_MB = 64.0
WORD = "word "
# The V2 document around the texts, and a string's quotes, comma and space, left out of the body budget.
ENVELOPE_BYTES = 256
PER_ELEMENT_BYTES = 4
# Answered, or out of time after running the whole budget; anything else fails the benchmark.
ACCEPTED_STATUSES = {200, 504}


@dataclass(frozen=True, slots=True)
class WorstRequest:
    name: str
    count: int
    element_bytes: int
    # "word word ..." settles a prefix on the first try; one unbroken word makes the prefix grow to the
    # whole text, the tokenizer's most expensive case.
    word: str = WORD

    def texts(self) -> list[str]:
        text = (self.word * (self.element_bytes // len(self.word) + 1))[: self.element_bytes]
        return [text] * self.count


def worst_requests() -> tuple[WorstRequest, ...]:
    """The two extremes the limits allow in one body of at most LAMBDA_PAYLOAD_BYTES."""
    room = LAMBDA_PAYLOAD_BYTES - ENVELOPE_BYTES
    most = DEFAULT_MAX_BATCH
    largest = DEFAULT_MAX_STRING_BYTES
    fitting = room // (largest + PER_ELEMENT_BYTES)
    return (
        WorstRequest(f"{most:,} texts", most, room // most - PER_ELEMENT_BYTES),
        WorstRequest(f"{fitting} texts of 256 KiB", fitting, largest),
        WorstRequest(f"{fitting} texts of one 256 KiB word", fitting, largest, word="x"),
    )


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("worst", worst_requests(), ids=lambda worst: worst.name)
def test_the_worst_text_request_the_limits_allow_is_bounded_in_memory(
    recipe: str,
    worst: WorstRequest,
    bench_results: BenchResults,
    bench_store: BenchStore,
    bench_models: ModelZoo,
) -> None:
    manifest = bench_models.published(bench_store, recipe)
    model = manifest.name
    event = json_infer_event(model, {"text": np.asarray(worst.texts(), dtype=object)})
    body_bytes = len(event["body"].encode())
    if body_bytes > LAMBDA_PAYLOAD_BYTES:
        raise BenchError(f"{worst.name}: expected a body within {LAMBDA_PAYLOAD_BYTES}, got {body_bytes}")
    request: dict[str, Any] = {
        "function_path": str(ROOT / "functions" / "infer" / "app.py"),
        "warm_event": json_infer_event(model, {"text": np.asarray(["a short text"], dtype=object)}),
        "event": event,
        "repeats": REPEATS,
    }
    report = run_isolated(CHILD, request, isolated_env(bench_store.function_env()), CHILD_TIMEOUT_S)
    runs = report["runs"]
    statuses = [run["status"] for run in runs]
    if not set(statuses) <= ACCEPTED_STATUSES:
        raise BenchError(
            f"{recipe}, {worst.name}: expected 200 or 504, got {statuses}: {runs[-1]['body_head']}"
        )
    warm_mb = report["warm_rss_kib"] / 1024
    peak_growth = max(run["peak_rss_kib"] for run in runs) / 1024 - warm_mb
    retained = runs[-1]["after_rss_kib"] / 1024 - warm_mb
    details = {
        "body_mb": round(body_bytes / MIB, 2),
        "elements": worst.count,
        "element_bytes": worst.element_bytes,
        "warm_rss_mb": round(warm_mb, 1),
        "peak_rss_mb": [round(run["peak_rss_kib"] / 1024, 1) for run in runs],
        "rss_after_mb": [round(run["after_rss_kib"] / 1024, 1) for run in runs],
        "seconds": [round(run["seconds"], 2) for run in runs],
        "statuses": statuses,
    }
    where = f"{recipe}, {worst.name}"
    bench_results.record(
        CASE,
        f"peak RSS over the warm function, {where}",
        peak_growth,
        "MB",
        target=f"≤ +{PEAK_GROWTH_MB:.0f} MB",
        met=peak_growth <= PEAK_GROWTH_MB,
        details=details,
    )
    bench_results.record(
        CASE,
        f"RSS kept after {REPEATS} requests, {where}",
        retained,
        "MB",
        target=f"≤ +{RETAINED_MB:.0f} MB",
        met=retained <= RETAINED_MB,
        details=details,
    )
    bench_results.record(
        CASE, f"request time, {where}", [run["seconds"] for run in runs], "s", details=details
    )
