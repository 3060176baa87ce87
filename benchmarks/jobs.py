"""A batch job as the batch cases run it: JSONL rows of ten floats, the job in a fresh process
(`benchmarks.batch_job_process`) against the bench store, the status.json it writes, and the clean-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tests.support.jobs import job_event
from tests.support.paths import ROOT

from benchmarks.harness import run_isolated
from maas.service.job_layout import JobStatus

if TYPE_CHECKING:
    from benchmarks.store import BenchStore

ROW_VALUES = 10
# Four decimals keep a row near 77 bytes, the size of a typical tabular JSONL row.
ROW_FORMAT = "[" + ",".join(["%.4f"] * ROW_VALUES) + "]"
INPUT_FILE = "input.jsonl"


def run_job_process(
    store: BenchStore,
    env: dict[str, str],
    folder: str,
    input_bytes: int,
    remaining_ms: int,
    timeout_s: float,
) -> tuple[dict[str, Any], JobStatus]:
    """Run the job whose input is `folder`input.jsonl in a fresh process, as the SQS message S3 sends for
    it; returns the process's report and the status.json the job wrote."""
    request = {
        "function_path": str(ROOT / "functions" / "batch" / "app.py"),
        "event": job_event(folder + INPUT_FILE, bucket=store.bucket, size=input_bytes),
        "remaining_ms": remaining_ms,
    }
    report = run_isolated("benchmarks.batch_job_process", request, env, timeout_s)
    status_body = store.s3.get_object(Bucket=store.bucket, Key=folder + "status.json")["Body"].read()
    return report, JobStatus.model_validate_json(status_body)


@contextmanager
def removed_afterwards(store: BenchStore, folder: str) -> Iterator[None]:
    """Delete every object under `folder` when the block ends: moto keeps every object in this process, so
    a GB-sized input must not outlive its measurement."""
    try:
        yield
    finally:
        listed = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=folder).get("Contents", [])
        if listed:
            store.s3.delete_objects(
                Bucket=store.bucket, Delete={"Objects": [{"Key": item["Key"]} for item in listed]}
            )
