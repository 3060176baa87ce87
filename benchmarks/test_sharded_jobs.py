"""Sharded batch jobs (issue 22): the planner on a 5 GB input, and MiniLM rows/s with 1, 2 and 4 shard
workers of the local Distributed Map.

Planner: the input is made on the fly in the bench store (80 multipart parts of one 64 MiB block of JSONL or
CSV rows, about 5.4 GB) and deleted afterwards; the planner runs in a fresh process against it, as the plan
step does, with the default shard size (64 MiB), and reports its wall time, the bytes it read and its peak
memory. The CSV file is quote-free, the planner's worst case: no window can prove a cut, so each cut reads
its largest window.

Shard workers: one local stack per worker count, with MiniLM published, runs one JSONL job of realistic
texts cut into shards by a forced small MAAS_TEXT_JOB_SHARD_BYTES; the rows/s is what status.json reports
(from the plan to the status, so planning, every shard, and the merge), and each shard's own rows/s is kept
for the cost estimate in docs/performance.md.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from benchmarks.harness import BenchError, BenchResults, isolated_env, run_isolated
from benchmarks.jobs import ROW_FORMAT, ROW_VALUES, removed_afterwards
from benchmarks.store import STORE_REGION
from benchmarks.workloads import realistic_texts
from maas.local.stack import LocalStack
from maas.objects import PartsUpload
from maas.service.job_layout import JobStatus
from maas.training import publish_trained

if TYPE_CHECKING:
    from benchmarks.llm_models import LlmZoo
    from benchmarks.store import BenchStore, ModelZoo

CASE = "sharded jobs"
# A case of its own: a run of the planner alone (its uploads take minutes) replaces only the planner's rows.
PLANNER_CASE = "sharded job planner"
BLOCK_BYTES = 64 * 1024 * 1024
BLOCKS = 80  # 80 x 64 MiB = 5.37 GB
PLANNER_SHARD_BYTES = 64 * 1024 * 1024
MAX_RECORD_BYTES = 6 * 1024 * 1024
PLANNER_TIMEOUT_S = 900.0
MINILM_RECIPE = "minilm-embed"
MINILM_TEXTS = 6_000
MINILM_SHARDS = 12
WORKER_COUNTS = (1, 2, 4)
PROMPT_TOPICS = (
    "lighthouse",
    "glacier",
    "violin",
    "compass",
    "harbor",
    "volcano",
    "library",
    "satellite",
    "orchard",
    "bridge",
    "telescope",
    "desert",
    "canal",
    "windmill",
    "reef",
    "cathedral",
)
PROMPT_MAX_TOKENS = 48
PROMPT_SHARDS = 4
JOB_TIMEOUT_S = 1_800.0


def row_block(input_format: str) -> bytes:
    """About BLOCK_BYTES of rows of ten floats, whole lines only, as JSONL or quote-free CSV."""
    rows = np.random.default_rng(5).normal(size=(BLOCK_BYTES // 70, ROW_VALUES))
    row_format = ROW_FORMAT if input_format == "jsonl" else ",".join(["%.4f"] * ROW_VALUES)
    buffer = io.BytesIO()
    np.savetxt(buffer, rows, fmt=row_format)
    block = buffer.getvalue()[:BLOCK_BYTES]
    return block[: block.rindex(b"\n") + 1]


def upload_big_input(store: BenchStore, key: str, block: bytes) -> int:
    upload = PartsUpload(store.s3, store.bucket, key, concurrency=4)
    for _ in range(BLOCKS):
        upload.send(block)
    if not upload.complete():
        raise AssertionError(f"{key}: expected a new key")
    return len(block) * BLOCKS


@pytest.mark.parametrize("input_format", ["jsonl", "csv"])
def test_the_planner_cuts_a_5_gb_input_reading_a_small_part_of_it(
    bench_results: BenchResults, bench_store: BenchStore, input_format: str
) -> None:
    folder = f"jobs/seed-mlp/bench-planner-{input_format}-{uuid.uuid4().hex[:8]}/"
    key = f"{folder}input.{input_format}"
    with removed_afterwards(bench_store, folder):
        size = upload_big_input(bench_store, key, row_block(input_format))
        report = run_isolated(
            "benchmarks.planner_process",
            {
                "endpoint_url": bench_store.endpoint_url,
                "bucket": bench_store.bucket,
                "key": key,
                "input_format": input_format,
                "shard_bytes": PLANNER_SHARD_BYTES,
                "max_record_bytes": MAX_RECORD_BYTES,
            },
            isolated_env(bench_store.function_env()),
            PLANNER_TIMEOUT_S,
        )
    assert report["input_bytes"] == size
    bench_results.record(
        PLANNER_CASE,
        f"planner, {size / 1e9:.1f} GB {input_format} input, {PLANNER_SHARD_BYTES // 2**20} MiB shards "
        "(fresh process)",
        report["seconds"],
        "s",
        details={
            "shards": report["shards"],
            "ranged_reads": report["reads"],
            "mb_read": round(report["bytes_read"] / 1e6, 1),
            "share_of_input_read": round(report["bytes_read"] / size, 4),
            "rss_before_mb": round(report["baseline_rss_kib"] / 1024, 1),
            "peak_rss_mb": round(report["peak_rss_kib"] / 1024, 1),
            "peak_over_before_mb": round((report["peak_rss_kib"] - report["baseline_rss_kib"]) / 1024, 1),
        },
    )


# ---- shard workers of the local Map


@contextmanager
def local_stack(monkeypatch: pytest.MonkeyPatch, workers: int, **settings: str) -> Iterator[LocalStack]:
    """A local stack whose Map runs `workers` shards at once; `settings` (MAAS_JOB_SHARD_BYTES, ...) beat the
    template's values, as a shell's would."""
    with monkeypatch.context() as env:
        for name, value in settings.items():
            env.setenv(name, value)
        with LocalStack(port=0, embedded=True, shard_workers=workers) as stack:
            yield stack


def run_stack_job(stack: LocalStack, model: str, body: bytes, timeout_s: float = JOB_TIMEOUT_S) -> JobStatus:
    folder = f"jobs/{model}/bench-{uuid.uuid4().hex[:12]}/"
    s3 = boto3.client("s3", endpoint_url=stack.store.endpoint_url, region_name=STORE_REGION)
    s3.put_object(Bucket=stack.store.bucket, Key=f"{folder}input.jsonl", Body=body)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status_body = s3.get_object(Bucket=stack.store.bucket, Key=folder + "status.json")["Body"].read()
        except ClientError:
            time.sleep(0.5)
            continue
        status = JobStatus.model_validate_json(status_body)
        if status.state != "succeeded":
            raise BenchError(f"{folder}: expected the job to succeed, got {status.error}")
        return status
    raise BenchError(f"{folder}: expected a status within {timeout_s:.0f} s")


def shard_rates(status: JobStatus) -> list[float]:
    """Each shard's own rows/s: its lines over the seconds its function ran."""
    return [
        (shard.succeeded + shard.failed) / shard.seconds for shard in status.shards or [] if shard.seconds > 0
    ]


def test_minilm_rows_per_second_with_1_2_and_4_shard_workers(
    bench_results: BenchResults, bench_models: ModelZoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = bench_models.trained(MINILM_RECIPE)
    body = ("\n".join(json.dumps(text) for text in realistic_texts(MINILM_TEXTS)) + "\n").encode()
    shard_bytes = len(body) // MINILM_SHARDS + 1
    single: JobStatus | None = None
    with local_stack(monkeypatch, 1) as stack:
        publish_trained(trained, stack.registry, name="minilm")
        single = run_stack_job(stack, "minilm", body)
    assert single.shards is None
    bench_results.record(
        CASE,
        f"MiniLM: one invocation, {MINILM_TEXTS:,} texts as one JSONL job (no shards)",
        single.rows_per_second or 0.0,
        "rows/s",
        details={"job_s": single.seconds, "input_bytes": len(body)},
    )
    # Each local worker is one function environment of the template's BatchMemorySize (2048 MB: one vCPU,
    # one onnxruntime thread); the last run gives one worker two threads, a 3,538 MB function's two vCPUs.
    runs = [(workers, None) for workers in WORKER_COUNTS] + [(1, 2)]
    for workers, threads in runs:
        settings = {"MAAS_TEXT_JOB_SHARD_BYTES": str(shard_bytes)}
        if threads is not None:
            settings["MAAS_INTRA_OP_THREADS"] = str(threads)
        with local_stack(monkeypatch, workers, **settings) as stack:
            publish_trained(trained, stack.registry, name="minilm")
            status = run_stack_job(stack, "minilm", body)
        rates = shard_rates(status)
        threads_text = f", {threads} onnxruntime threads each" if threads else ""
        bench_results.record(
            CASE,
            f"MiniLM: {MINILM_TEXTS:,} texts in {len(status.shards or [])} shards, {workers} local shard "
            f"worker{'s' if workers > 1 else ''}{threads_text} (plan to status)",
            status.rows_per_second or 0.0,
            "rows/s",
            details={
                "job_s": status.seconds,
                "shards": len(status.shards or []),
                "shard_rows_per_s_median": round(statistics.median(rates), 1),
                "shard_s_median": round(statistics.median(shard.seconds for shard in status.shards or []), 2),
                "bytes_per_text": round(len(body) / MINILM_TEXTS, 1),
                "cpu_cores": os.cpu_count(),
            },
        )


def test_a_sharded_prompt_job_per_shard_throughput(
    bench_results: BenchResults, bench_llms: LlmZoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolLM2 int8 answering PROMPTS chat prompts in PROMPT_SHARDS shards, one worker: each shard's prompts
    and completion tokens per second, the per-function figures of the generation estimate."""
    bodies = [
        {
            "messages": [{"role": "user", "content": f"In one sentence, what is a {topic}?"}],
            "max_tokens": PROMPT_MAX_TOKENS,
            "temperature": 0,
        }
        for topic in PROMPT_TOPICS
    ]
    body = ("\n".join(json.dumps(line) for line in bodies) + "\n").encode()
    shard_bytes = len(body) // PROMPT_SHARDS + 1
    with local_stack(monkeypatch, 1, MAAS_PROMPT_JOB_SHARD_BYTES=str(shard_bytes)) as stack:
        bench_llms.publish_into(stack.registry, "int8", "smollm2")
        status = run_stack_job(stack, "smollm2", body)
    shards = status.shards or []
    tokens = status.tokens
    assert tokens is not None and shards
    shard_seconds = sum(shard.seconds for shard in shards)
    bench_results.record(
        CASE,
        f"SmolLM2 int8: {len(bodies)} chat prompts (max_tokens {PROMPT_MAX_TOKENS}) in {len(shards)} shards, "
        "1 local shard worker, per shard",
        [(shard.succeeded + shard.failed) / shard.seconds for shard in shards if shard.seconds > 0],
        "prompts/s",
        details={
            "completion_tokens": tokens.completion_tokens,
            "prompt_tokens": tokens.prompt_tokens,
            "completion_tokens_per_shard_s": round(tokens.completion_tokens / shard_seconds, 1),
            "seconds_per_prompt": round(shard_seconds / len(bodies), 3),
            "job_s": status.seconds,
        },
    )
