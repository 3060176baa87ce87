"""Batch path: rows per second through the batch function against one infer invocation per row.

The same seed-mlp rows both ways. Per row: a fresh process imports the infer function, makes one cold
invocation (which loads the model), then answers PER_ROW_ROWS rows, each its own HTTP API v2 event carrying
a one-row V2 request; only these warm invocations are timed. Batch: BATCH_ROWS rows as one JSONL job through
functions/batch/app.py in a fresh process (benchmarks.batch_job_process), at the rate its status.json
reports, which includes loading the model: the comparison favours the per-row side twice over, since it
counts neither the model load nor what Lambda adds per invocation.
"""

from __future__ import annotations

import copy
import json
import statistics
from typing import TYPE_CHECKING, Any

import numpy as np
from tests.support.events import load_event
from tests.support.paths import ROOT

from benchmarks.harness import BenchError, BenchResults, isolated_env, run_isolated
from benchmarks.jobs import INPUT_FILE, ROW_FORMAT, ROW_VALUES, removed_afterwards, run_job_process
from maas.service.job_layout import JobStatus

if TYPE_CHECKING:
    from benchmarks.store import BenchStore

CASE = "batch throughput"
MODEL = "seed-mlp"
BATCH_ROWS = 50_000
PER_ROW_ROWS = 2_000
# The per-row rate is reported per slice of the run, so its spread shows.
PER_ROW_SLICES = 5
BATCH_RUNS = 3
SPEEDUP_TARGET = 10.0
JOB_REMAINING_MS = 15 * 60 * 1000
CHILD_TIMEOUT_S = 300.0


def test_batch_function_against_one_invocation_per_row(
    bench_results: BenchResults, bench_store: BenchStore
) -> None:
    lines = jsonl_rows(BATCH_ROWS)
    env = isolated_env(bench_store.function_env())

    per_row = run_per_row(env, lines[:PER_ROW_ROWS], bench_store.seed.version)
    warm_s: list[float] = per_row["warm_s"]
    slice_rows = PER_ROW_ROWS // PER_ROW_SLICES
    slice_rates = [
        slice_rows / sum(warm_s[start : start + slice_rows]) for start in range(0, PER_ROW_ROWS, slice_rows)
    ]
    per_row_rate = PER_ROW_ROWS / sum(warm_s)
    bench_results.record(
        CASE,
        f"{MODEL}: one warm infer invocation per row (fresh process, {PER_ROW_ROWS:,} rows)",
        slice_rates,
        "rows/s",
        details={
            "rows_per_s_overall": round(per_row_rate),
            "ms_per_invocation_median": round(1000 * statistics.median(warm_s), 3),
            "ms_per_invocation_p99": round(1000 * float(np.percentile(warm_s, 99)), 3),
            "cpu_ms_per_invocation": round(1000 * per_row["warm_cpu_s"] / PER_ROW_ROWS, 3),
            "cold_invocation_ms": round(1000 * per_row["cold_s"], 1),
        },
    )

    jobs = [
        run_batch_job(bench_store, env, lines, f"bench-throughput-{index}") for index in range(BATCH_RUNS)
    ]
    batch_rates = [status.rows_per_second or 0.0 for status, _ in jobs]
    bench_results.record(
        CASE,
        f"{MODEL}: batch function, the same rows as one {BATCH_ROWS:,}-row JSONL job (fresh process)",
        batch_rates,
        "rows/s",
        details={
            "job_s_median": statistics.median(status.seconds for status, _ in jobs),
            "import_s_median": round(statistics.median(report["import_s"] for _, report in jobs), 2),
            "invoke_s_median": round(statistics.median(report["invoke_s"] for _, report in jobs), 2),
            "peak_rss_mb_median": round(
                statistics.median(report["peak_rss_kib"] for _, report in jobs) / 1024, 1
            ),
        },
    )
    speedup = statistics.median(batch_rates) / per_row_rate
    bench_results.record(
        CASE,
        f"{MODEL}: batch rows/s / per-row rows/s",
        speedup,
        "x",
        target=f"≥ {SPEEDUP_TARGET:g}x",
        met=speedup >= SPEEDUP_TARGET,
    )


def jsonl_rows(count: int) -> list[str]:
    """`count` rows of ten floats as JSONL lines, formatted as the batch memory case formats them."""
    values = np.random.default_rng(1).normal(size=(count, ROW_VALUES))
    return [ROW_FORMAT % tuple(row) for row in values]


def run_per_row(env: dict[str, str], lines: list[str], version: int) -> dict[str, Any]:
    event = copy.deepcopy(load_event("http_v2_infer.json"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v2/models/{MODEL}/infer"
    event["pathParameters"] = {"name": MODEL}
    bodies = [
        f'{{"inputs":[{{"name":"input","datatype":"FP32","shape":[1,10],"data":{line}}}]}}' for line in lines
    ]
    event["body"] = bodies[0]
    event["headers"].pop("content-length", None)
    report = run_isolated(
        "benchmarks.warm_infer_process",
        {"function_path": str(ROOT / "functions" / "infer" / "app.py"), "event": event, "bodies": bodies},
        env,
        CHILD_TIMEOUT_S,
    )
    if report["cold_status"] != 200 or report["statuses"] != {"200": len(lines)}:
        raise BenchError(
            f"per-row invocations: expected 200 to all {len(lines) + 1}, got the cold one "
            f"{report['cold_status']} and {report['statuses']}"
        )
    answered = json.loads(report["last_body"])
    if answered["model_version"] != str(version):
        raise BenchError(f"per-row invocations: expected version {version} to answer, got {answered}")
    return report


def run_batch_job(
    store: BenchStore, env: dict[str, str], lines: list[str], job_id: str
) -> tuple[JobStatus, dict[str, Any]]:
    folder = f"jobs/{MODEL}@latest/{job_id}/"
    input_key = folder + INPUT_FILE
    data = ("\n".join(lines) + "\n").encode()
    with removed_afterwards(store, folder):
        store.s3.put_object(Bucket=store.bucket, Key=input_key, Body=data)
        report, status = run_job_process(store, env, folder, len(data), JOB_REMAINING_MS, CHILD_TIMEOUT_S)
        if (
            report["response"] != {"batchItemFailures": []}
            or status.state != "succeeded"
            or (status.counts.lines, status.counts.failed) != (len(lines), 0)
            or status.model_version != store.seed.version
        ):
            raise BenchError(
                f"{input_key}: expected {len(lines)} lines answered by version {store.seed.version}, "
                f"got {report['response']} and status {status}"
            )
        return status, report
