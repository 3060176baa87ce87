"""The model alone, without the function around it: onnxruntime against PyTorch eager for every recipe, and
int8 against fp32 for the text models, at batch 1 and 32, each pair interleaved in one process.

Like with like: both sides get the same arrays (for a text model, the ids the serving tokenizer makes of the
same texts), the same CPUs, and their own faster thread count, one or one per usable CPU, picked by timing
both first (torch_threads says why; every timing is in the details). onnxruntime opens the graph with the
runtime's own session options (intra-op spinning off, its default since decision 0026); torch runs the
trained module in eval mode under inference_mode. The int8 graph is the dynamic per-channel quantization
`maas train --quantize int8` publishes, both graphs at one per usable CPU; its metric delta is the one
measured on the recipe's test set when it was made. On a machine shared with other work the wall ratio
moves with the load; `one_thread_cpu_us` in the details is each side's CPU time per call on one thread,
which moves far less.

Targets of our own: onnxruntime at least as fast as torch (>= 1.0x), and int8 >= 1.5x faster than fp32, or
not published (the training gates, accuracy and speed, refuse it), while losing at most the publishing
gate's default (0.01) on the primary metric.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
import torch

from benchmarks.harness import MIB, BenchError, BenchResults
from benchmarks.store import ModelZoo
from benchmarks.timing import interleaved
from benchmarks.torch_threads import fastest, fastest_torch_threads, median_us_by_threads, thread_counts
from benchmarks.workloads import BATCH_SIZES, Workload, repeats_within, workload
from maas.runtime import SessionConfig, write_model_files
from maas.training import TrainedModel
from maas.training.int8_speed import Int8Speed, speed_refusal
from maas.training.metric_goals import degradation
from maas.training.quantize import DEFAULT_MAX_DEGRADATION

TORCH_CASE = "onnxruntime vs torch"
INT8_CASE = "int8 vs fp32"
RECIPES = ("seed-mlp", "digits-resnet", "text-bert", "minilm-embed")
INT8_RECIPES = ("text-bert", "minilm-embed")
CPU_PROVIDER = "CPUExecutionProvider"
US = 1e6
# Seconds of timing per interleaved pair; a microsecond-scale model gets MOST_PAIRS, MiniLM at 32 LEAST.
PAIR_BUDGET_S = 2.0
LEAST_PAIRS, MOST_PAIRS = 10, 300
SESSION_NOTE = "the runtime's session options (graph optimization all, intra-op spinning off)"
# Pairs of the one-thread CPU time measurement (at most; fewer where the wall pairs were fewer).
CPU_PAIRS = 30
MIN_TORCH_SPEEDUP = 1.0
MIN_INT8_SPEEDUP = 1.5


def publishing_refusal(int8: TrainedModel, lost: float) -> str | None:
    """Why `maas train --quantize int8` would refuse this int8 version with its default gates (the accuracy
    one at DEFAULT_MAX_DEGRADATION, the speed one as it measured when the graph was made); None: published."""
    if not lost <= DEFAULT_MAX_DEGRADATION:
        return f"it loses {lost:.4g} of its primary metric, more than {DEFAULT_MAX_DEGRADATION:g}"
    speed = Int8Speed.from_params(int8.draft.params)
    if speed is None:
        raise BenchError("expected the int8 draft to record its speed measurement, got none")
    return speed_refusal(speed)


def graph_files(trained: TrainedModel) -> dict[str, bytes]:
    draft = trained.draft
    return {path: trained.files[path] for path in (draft.model_file, *draft.model_data_files)}


def open_session(trained: TrainedModel, threads: int) -> ort.InferenceSession:
    """The graph opened as the runtime opens it, from a folder (external data beside it), with the runtime's
    session options at `threads` intra-op threads."""
    options = SessionConfig(providers=(CPU_PROVIDER,), intra_op_threads=threads).session_options()
    with tempfile.TemporaryDirectory(prefix="maas-bench-") as folder:
        write_model_files(Path(folder), graph_files(trained))
        return ort.InferenceSession(
            str(Path(folder) / trained.draft.model_file), sess_options=options, providers=[CPU_PROVIDER]
        )


def _runner(session: ort.InferenceSession, feeds: dict[str, Any]) -> Callable[[], object]:
    return lambda: session.run(None, feeds)


def _one_thread_cpu_us(
    eager: Callable[[], object], onnxruntime: Callable[[], object], *, repeats: int
) -> dict[str, float]:
    """The median process CPU time of a call of each side on one thread, alternating: the work each does,
    which other processes on a shared machine slow down far less than they slow its wall time."""
    spent: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for _ in range(repeats):
        for side, call in (("torch", eager), ("onnxruntime", onnxruntime)):
            started = time.process_time()
            call()
            spent[side].append(time.process_time() - started)
    return {side: round(statistics.median(seconds) * US, 1) for side, seconds in spent.items()}


def input_details(work: Workload) -> dict[str, Any]:
    shapes = {name: list(array.shape) for name, array in work.graph.items()}
    details: dict[str, Any] = {"batch": work.batch, "graph_inputs": shapes}
    if work.texts is not None:
        details["texts"] = "realistic_texts(): 10-25 words each, tokenized by the serving tokenizer"
    return details


@pytest.mark.parametrize("recipe", RECIPES)
def test_onnxruntime_against_torch_eager(
    recipe: str, threads: int, bench_models: ModelZoo, bench_results: BenchResults
) -> None:
    trained = bench_models.trained(recipe)
    sessions = {count: open_session(trained, count) for count in thread_counts(threads)}
    module = trained.module.eval()
    for batch in BATCH_SIZES:
        work = workload(trained, batch)
        feeds = work.graph
        tensors = trained.graph.tensors(feeds)

        def eager(tensors: tuple[torch.Tensor, ...] = tensors) -> object:
            return module(*tensors)

        ort_by_threads = median_us_by_threads(
            {count: _runner(session, feeds) for count, session in sessions.items()}
        )
        ort_threads = fastest(ort_by_threads)
        onnxruntime = _runner(sessions[ort_threads], feeds)
        with torch.inference_mode():
            torch_threads, by_threads = fastest_torch_threads(eager, threads)
            repeats = repeats_within((eager, onnxruntime), PAIR_BUDGET_S, least=LEAST_PAIRS, most=MOST_PAIRS)
            torch_s, ort_s = interleaved(eager, onnxruntime, repeats=repeats, warmup=2)
            torch.set_num_threads(1)
            cpu_us = _one_thread_cpu_us(eager, _runner(sessions[1], feeds), repeats=min(repeats, CPU_PAIRS))
            torch.set_num_threads(torch_threads)
        speedups = [t / o for t, o in zip(torch_s, ort_s, strict=True)]
        bench_results.record(
            TORCH_CASE,
            f"{recipe} batch {batch}: onnxruntime speedup over torch eager",
            speedups,
            "x",
            target=f">= {MIN_TORCH_SPEEDUP:.1f}x (ours)",
            met=statistics.median(speedups) >= MIN_TORCH_SPEEDUP,
            details={
                **input_details(work),
                "torch_us": round(statistics.median(torch_s) * US, 1),
                "onnxruntime_us": round(statistics.median(ort_s) * US, 1),
                "onnxruntime_threads": ort_threads,
                "onnxruntime_us_by_threads": {str(n): round(us, 1) for n, us in ort_by_threads.items()},
                "torch_threads": torch_threads,
                "torch_us_by_threads": {str(n): round(us, 1) for n, us in by_threads.items()},
                "usable_cpus": threads,
                "pairs": repeats,
                "one_thread_cpu_us": cpu_us,
                "torch": f"torch {torch.__version__}, eval mode, inference_mode, the faster thread count",
                "onnxruntime": f"onnxruntime {ort.__version__}, {SESSION_NOTE}, the faster thread count",
            },
        )


@pytest.mark.parametrize("recipe", INT8_RECIPES)
def test_int8_against_fp32(
    recipe: str, threads: int, bench_models: ModelZoo, bench_results: BenchResults
) -> None:
    fp32 = bench_models.trained(recipe)
    int8 = bench_models.int8(recipe)
    quantization = int8.draft.quantization
    if quantization is None:
        raise BenchError(f"{recipe}: expected the int8 draft to record its quantization, got none")
    goal = fp32.draft.primary_metric_goal
    lost = degradation(quantization.quantized_value, quantization.fp32_value, goal or "maximize")
    refusal = publishing_refusal(int8, lost)
    fp32_session, int8_session = open_session(fp32, threads), open_session(int8, threads)
    for batch in BATCH_SIZES:
        work = workload(fp32, batch)

        def run_int8(feeds: dict[str, Any] = work.graph) -> object:
            return int8_session.run(None, feeds)

        def run_fp32(feeds: dict[str, Any] = work.graph) -> object:
            return fp32_session.run(None, feeds)

        repeats = repeats_within((run_int8, run_fp32), PAIR_BUDGET_S, least=LEAST_PAIRS, most=MOST_PAIRS)
        int8_s, fp32_s = interleaved(run_int8, run_fp32, repeats=repeats, warmup=2)
        speedups = [f / i for f, i in zip(fp32_s, int8_s, strict=True)]
        bench_results.record(
            INT8_CASE,
            f"{recipe} batch {batch}: int8 speedup over fp32",
            speedups,
            "x",
            target=f">= {MIN_INT8_SPEEDUP:.1f}x (ours), or int8 is not published",
            met=statistics.median(speedups) >= MIN_INT8_SPEEDUP or refusal is not None,
            details={
                **input_details(work),
                "fp32_us": round(statistics.median(fp32_s) * US, 1),
                "int8_us": round(statistics.median(int8_s) * US, 1),
                "threads": threads,
                "pairs": repeats,
                "onnxruntime": SESSION_NOTE,
            },
        )

    bench_results.record(
        INT8_CASE,
        f"{recipe}: int8 published by maas train --quantize int8 (1 yes, 0 refused)",
        0.0 if refusal is not None else 1.0,
        "",
        details={"refused_because": refusal, "gates": "accuracy (default 0.01) and speed (default 1.2x)"},
    )
    bench_results.record(
        INT8_CASE,
        f"{recipe}: int8 {quantization.metric} delta",
        quantization.delta,
        quantization.metric,
        target=f"loses <= {DEFAULT_MAX_DEGRADATION:g} (the publishing gate's default)",
        met=lost <= DEFAULT_MAX_DEGRADATION,
        details={
            "metric": quantization.metric,
            "goal": goal,
            "fp32": quantization.fp32_value,
            "int8": quantization.quantized_value,
            "per_channel": quantization.per_channel,
            "measured_on": "the recipe's test set, when the int8 graph was made",
        },
    )
    fp32_bytes = sum(len(data) for data in graph_files(fp32).values())
    int8_bytes = sum(len(data) for data in graph_files(int8).values())
    for precision, size in (("fp32", fp32_bytes), ("int8", int8_bytes)):
        bench_results.record(
            INT8_CASE,
            f"{recipe}: ONNX size, {precision}",
            size / MIB,
            "MB",
            details={"bytes": size, "int8_over_fp32": round(int8_bytes / fp32_bytes, 3)},
        )
