"""LLM cold start and memory: the generate function's first token in a fresh process against a hand-written
baseline, and the peak resident memory of a fresh process that served one generation (int8 and fp32).

maas (benchmarks.llm_cold_start_process): import functions/generate/app.py (timed apart), then a chat asking
for one token on an empty model cache: resolve the bare name (the default alias's GET, a 404, then a
listing), GET the manifest, the tokenizer and chat template, then the graph and its external data, each
verified by sha256 as it streams and written to a private folder, the session opened, one warm-up prefill
and step, then the chat's prefill and its first token. The same process then answers the chat for
MAX_TOKENS tokens, and reports its peak resident memory (VmHWM: ru_maxrss would carry a forked parent's).
Baseline: boto3's `download_file` of the graph and its data (one GET each, as the function makes: see
the child's docstring), an InferenceSession with the function's options, one step (the prompt prefilled
over an empty cache, argmax): its imports and client timed apart.
Both sides must agree on the first token.

Targets: first token / baseline <= 1.2x; peak RSS <= 1.3x the model's bytes plus its KV cache (the
request's prompt plus MAX_TOKENS positions, every layer's keys and values).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest
from tests.support.paths import ROOT
from tokenizers import Tokenizer

from benchmarks.cold_starts import ColdStartRows, ms_of, paired_runs, record_first_invocations
from benchmarks.harness import MIB, BenchError, BenchResults, isolated_env
from benchmarks.llm_models import BenchLlm, LlmZoo
from benchmarks.llm_workload import MAX_TOKENS, OK, chat_event, generation_of, load_average, prompt_ids
from benchmarks.store import STORE_REGION, BenchStore
from maas.registry import Generation, ModelRegistry
from maas.runtime import usable_cpus

CASE = "llm cold start"
CHILD = "benchmarks.llm_cold_start_process"
PAIRS = 3
RSS_TARGET = 1.3
CHILD_TIMEOUT_S = 600.0
KIB = 1024
FLOAT32_BYTES = 4


def kv_cache_bytes(generation: Generation, positions: int) -> int:
    """Every layer's keys and values for `positions` tokens, as the function allocates them per request."""
    per_position = 2 * generation.num_layers * generation.num_kv_heads * generation.head_size * FLOAT32_BYTES
    return per_position * positions


def first_text(report: dict[str, Any], field: str = "response") -> str:
    response = report[field]
    if response.get("statusCode") != OK:
        raise BenchError(f"generate function: expected 200, got {response.get('statusCode')}: {response}")
    text: str = json.loads(response["body"])["choices"][0]["message"]["content"]
    return text


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_first_token_against_download_session_and_step(
    precision: str, bench_store: BenchStore, bench_llms: LlmZoo, bench_results: BenchResults
) -> None:
    llm = bench_llms.published(bench_store, precision)
    manifest = llm.manifest
    generation = generation_of(manifest)
    ids = prompt_ids(llm.folder, generation)
    env = isolated_env(bench_store.function_env())
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode as a deployed package has it
    maas_request: dict[str, Any] = {
        "side": "maas",
        "function_path": str(ROOT / "functions" / "generate" / "app.py"),
        "event": chat_event(manifest.name, max_tokens=1),
        "generation_event": chat_event(manifest.name),
    }
    prefix = ModelRegistry(bench_store.s3, bench_store.bucket).version_prefix(manifest.name, manifest.version)
    baseline_request: dict[str, Any] = {
        "side": "baseline",
        "endpoint_url": bench_store.endpoint_url,
        "region": STORE_REGION,
        "bucket": bench_store.bucket,
        "keys": [prefix + path for path in manifest.graph_files],
        "model_file": manifest.model_file,
        "prompt_ids": ids,
        "generation": generation.model_dump(),
        "threads": usable_cpus(),
    }
    tokenizer = Tokenizer.from_file(str(llm.folder / generation.tokenizer_file))

    def check(maas: dict[str, Any], baseline: dict[str, Any]) -> None:
        served, expected = first_text(maas), tokenizer.decode([baseline["token"]])
        if served != expected:
            raise BenchError(
                f"{manifest.name}: expected the first token {expected!r} both ways, got {served!r}"
            )
        first_text(maas, "generation_response")

    load_before = load_average()
    maas_runs, baseline_runs = paired_runs(
        CHILD, maas_request, baseline_request, env, pairs=PAIRS, timeout_s=CHILD_TIMEOUT_S, check=check
    )
    load_after = load_average()
    record_first_invocations(
        bench_results,
        CASE,
        ColdStartRows(
            first=f"{precision}: first token (fresh process, empty cache)",
            baseline=f"{precision}: baseline download_file + InferenceSession + one step",
            ratio=f"{precision}: first token / baseline",
        ),
        maas_runs,
        baseline_runs,
        load_step="load_generator",
        first_details={
            "model_mb": round(llm.model_bytes / MIB, 1),
            "import_ms_median": round(statistics.median(ms_of(maas_runs, "import_s")), 1),
        },
        ratio_details={"load_average_before_and_after": [load_before, load_after]},
    )
    _record_memory(bench_results, llm, generation, len(ids), maas_runs, baseline_runs)


def _record_memory(
    results: BenchResults,
    llm: BenchLlm,
    generation: Generation,
    prompt_tokens: int,
    maas_runs: list[dict[str, Any]],
    baseline_runs: list[dict[str, Any]],
) -> None:
    kv_bytes = kv_cache_bytes(generation, prompt_tokens + MAX_TOKENS)
    budget_mb = (llm.model_bytes + kv_bytes) / MIB
    peaks_mb = [run["peak_rss_kib"] * KIB / MIB for run in maas_runs]
    ratios = [peak / budget_mb for peak in peaks_mb]

    def median_mb(runs: list[dict[str, Any]], field: str) -> float:
        return round(float(statistics.median(run[field] * KIB / MIB for run in runs)), 1)

    results.record(
        CASE,
        f"{llm.precision}: peak RSS, fresh process serving one generation",
        peaks_mb,
        "MB",
        details={
            "model_mb": round(llm.model_bytes / MIB, 1),
            "kv_cache_mb": round(kv_bytes / MIB, 2),
            "rss_after_import_mb": median_mb(maas_runs, "rss_after_import_kib"),
            "peak_rss_after_first_token_mb": median_mb(maas_runs, "peak_rss_after_first_kib"),
            "rss_after_generation_mb": median_mb(maas_runs, "rss_after_generation_kib"),
            "baseline_peak_rss_mb": median_mb(baseline_runs, "peak_rss_kib"),
            "generation_ms_median": round(statistics.median(ms_of(maas_runs, "generation_s")), 1),
            "how": "VmHWM after a one-token chat (the cold start) and a chat of MAX_TOKENS tokens",
        },
    )
    results.record(
        CASE,
        f"{llm.precision}: peak RSS / (model bytes + KV cache)",
        ratios,
        "x",
        target=f"≤ {RSS_TARGET:g}x",
        met=statistics.median(ratios) <= RSS_TARGET,
        details={
            "model_plus_kv_mb": round(budget_mb, 1),
            "max_tokens": MAX_TOKENS,
            "prompt_tokens": prompt_tokens,
        },
    )
