"""Batch function peak memory: a JSONL job of 10 MB, 100 MB and 1 GB, each in a fresh process.

The batch path streams its input and output, so its peak must not grow with the input: the target is a peak
at the largest input within +10% (or +64 MB, whichever is larger) of the peak at the smallest.
MAAS_BENCH_BATCH_SIZES_MB="10,50" picks other sizes (MiB) for a quick run.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.harness import MIB, BenchError, BenchResults, isolated_env
from benchmarks.jobs import INPUT_FILE, ROW_FORMAT, ROW_VALUES, removed_afterwards, run_job_process
from maas.service.job_layout import JobStatus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from benchmarks.store import BenchStore

CASE = "batch memory"
SIZES_ENV = "MAAS_BENCH_BATCH_SIZES_MB"
DEFAULT_SIZES_MB = (10, 100, 1024)
GROWTH_FRACTION = 0.10
GROWTH_FLOOR_MB = 64.0
LAMBDA_TIMEOUT_S = 900
# The job runs to the end whatever its length: the memory verdict must not depend on this machine's speed.
JOB_REMAINING_MS = 24 * 3600 * 1000
JOB_PROCESS_TIMEOUT_S = 3600.0
BLOCK_ROWS = 1 << 17
UPLOAD_PART_BYTES = 64 * MIB


@dataclass(frozen=True, slots=True)
class JobRun:
    size_mb: int
    rows: int
    input_bytes: int
    output_bytes: int
    status: JobStatus
    report: dict[str, Any]

    @property
    def peak_mb(self) -> float:
        return float(self.report["peak_rss_kib"]) / 1024

    @property
    def baseline_mb(self) -> float:
        return float(self.report["baseline_rss_kib"]) / 1024

    def details(self) -> dict[str, Any]:
        return {
            "input_mb": round(self.input_bytes / MIB, 1),
            "rows": self.rows,
            "output_mb": round(self.output_bytes / MIB, 1),
            "peak_rss_mb": round(self.peak_mb, 1),
            "rss_after_import_mb": round(self.baseline_mb, 1),
            "peak_during_import_mb": round(self.report["import_peak_rss_kib"] / 1024, 1),
            "rss_after_job_mb": round(self.report["after_rss_kib"] / 1024, 1),
            "job_s": self.status.seconds,
            "rows_per_s": self.status.rows_per_second,
            "import_s": round(self.report["import_s"], 2),
            "invoke_s": round(self.report["invoke_s"], 2),
            # Above invoke_s when onnxruntime's threads share the work; well below it, the job waited.
            "invoke_cpu_s": round(self.report["invoke_cpu_s"], 2),
        }


def test_batch_function_peak_memory_does_not_grow_with_the_input(
    bench_results: BenchResults, bench_store: BenchStore
) -> None:
    runs = [run_job(bench_store, size_mb) for size_mb in sizes_mb()]

    for run in runs:
        bench_results.record(
            CASE, f"peak RSS, {run.size_mb} MB input", run.peak_mb, "MB", details=run.details()
        )
    smallest, largest = runs[0], runs[-1]
    if len(runs) > 1:
        growth_mb = largest.peak_mb - smallest.peak_mb
        allowed_mb = max(GROWTH_FRACTION * smallest.peak_mb, GROWTH_FLOOR_MB)
        bench_results.record(
            CASE,
            f"peak RSS growth, {smallest.size_mb} MB → {largest.size_mb} MB input",
            growth_mb,
            "MB",
            target=f"≤ +{allowed_mb:.0f} MB (+{GROWTH_FRACTION:.0%} or +{GROWTH_FLOOR_MB:.0f} MB, "
            "whichever is larger)",
            met=growth_mb <= allowed_mb,
        )
        bench_results.record(
            CASE,
            f"peak RSS growth, as % of the {smallest.size_mb} MB peak",
            100 * growth_mb / smallest.peak_mb,
            "%",
        )
    bench_results.record(
        CASE,
        f"job memory over the imported function, {largest.size_mb} MB input",
        largest.peak_mb - largest.baseline_mb,
        "MB",
        details={"rss_after_import_mb": round(largest.baseline_mb, 1)},
    )
    for run in runs:
        bench_results.record(
            CASE, f"throughput, {run.size_mb} MB input", run.status.rows_per_second or 0.0, "rows/s"
        )
    bench_results.record(
        CASE,
        f"job time, {largest.size_mb} MB input",
        largest.status.seconds,
        "s",
        target=f"≤ {LAMBDA_TIMEOUT_S} s (Lambda's longest timeout)",
        met=largest.status.seconds <= LAMBDA_TIMEOUT_S,
    )


def sizes_mb() -> list[int]:
    text = os.environ.get(SIZES_ENV, "")
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()}) or list(DEFAULT_SIZES_MB)
    except ValueError as exc:
        raise BenchError(f"{SIZES_ENV}: expected comma-separated whole megabytes, got {text!r}") from exc
    if sizes[0] < 1:
        raise BenchError(f"{SIZES_ENV}: expected sizes of at least 1 MB, got {text!r}")
    return sizes


def run_job(store: BenchStore, size_mb: int) -> JobRun:
    folder = f"jobs/seed-mlp@latest/bench-{size_mb}mb/"
    input_key = folder + INPUT_FILE
    with removed_afterwards(store, folder):
        rows, input_bytes = upload_jsonl_rows(store.s3, store.bucket, input_key, size_mb * MIB)
        report, status = run_job_process(
            store,
            isolated_env(store.function_env()),
            folder,
            input_bytes,
            JOB_REMAINING_MS,
            JOB_PROCESS_TIMEOUT_S,
        )
        if report["response"] != {"batchItemFailures": []} or status.state != "succeeded":
            raise BenchError(
                f"{input_key}: expected a succeeded job, got {report['response']} and status {status}"
            )
        if (status.counts.lines, status.counts.failed) != (rows, 0):
            raise BenchError(
                f"{input_key}: expected {rows} lines answered without errors, got {status.counts}"
            )
        if status.model_version != store.seed.version:
            raise BenchError(
                f"{input_key}: expected version {store.seed.version}, got {status.model_version}"
            )
        output = store.s3.head_object(Bucket=store.bucket, Key=folder + "output.jsonl")
        # Each answer line is at least its row count of floats; a shorter object lost lines.
        if output["ContentLength"] < rows * 2 * ROW_VALUES:
            raise BenchError(
                f"{folder}output.jsonl: expected {rows} lines, got {output['ContentLength']} bytes"
            )
        return JobRun(size_mb, rows, input_bytes, output["ContentLength"], status, report)


def upload_jsonl_rows(s3: S3Client, bucket: str, key: str, size_bytes: int) -> tuple[int, int]:
    """JSONL rows of ten floats, at most `size_bytes`, streamed up part by part; returns (rows, bytes).

    One block of distinct random rows, repeated: formatting 14 million rows would take longer than the job
    does, and neither JSON decoding nor inference costs less for a row seen before."""
    values = np.random.default_rng(0).normal(size=(BLOCK_ROWS, ROW_VALUES))
    text = io.BytesIO()
    np.savetxt(text, values, fmt=ROW_FORMAT)
    block = text.getvalue()
    line_ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n")) + 1
    whole_blocks, remainder = divmod(size_bytes, len(block))
    tail_rows = int(np.searchsorted(line_ends, remainder, side="right"))
    tail = block[: int(line_ends[tail_rows - 1])] if tail_rows else b""
    blocks_per_part = max(1, UPLOAD_PART_BYTES // len(block))
    part_blocks = [blocks_per_part] * (whole_blocks // blocks_per_part)
    if whole_blocks % blocks_per_part or not part_blocks:
        part_blocks.append(whole_blocks % blocks_per_part)

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts: list[CompletedPartTypeDef] = []
    for number, count in enumerate(part_blocks, start=1):
        # The tail joins the last part: every part but the last must be at least 5 MiB.
        body = block * count + (tail if number == len(part_blocks) else b"")
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)[
            "ETag"
        ]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return whole_blocks * BLOCK_ROWS + tail_rows, whole_blocks * len(block) + len(tail)
