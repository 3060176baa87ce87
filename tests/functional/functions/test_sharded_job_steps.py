"""Sharded batch jobs through the batch function as Step Functions runs them: every step a direct invoke
with the payload template.yaml's JobStateMachine sends, over moto, with shard sizes small enough that a
small input makes many shards. Each job's output must be byte for byte what the single path writes for the
same input."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from maas.registry import Manifest
from tests.support.aws import TEST_BUCKET
from tests.support.functions import start_function
from tests.support.jobs import Context, StepRun, job_event, read_status, submit

SHARD_BYTES = 2000


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "batch", MAAS_JOB_SHARD_BYTES=str(SHARD_BYTES))


def rows_of(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 10)).astype(np.float32)


def output_of(s3: Any, folder: str) -> bytes:
    return bytes(s3.get_object(Bucket=TEST_BUCKET, Key=f"{folder}output.jsonl")["Body"].read())


def single_and_sharded(
    function: ModuleType, s3: Any, version: int, name: str, body: bytes, fmt: str = "jsonl"
) -> tuple[str, str, StepRun]:
    single, sharded = f"jobs/seed-mlp/{name}-single/", f"jobs/seed-mlp/{name}-sharded/"
    submit(s3, f"{single}input.{fmt}", body)
    submit(s3, f"{sharded}input.{fmt}", body)
    function.lambda_handler(job_event(f"{single}input.{fmt}"), Context())
    run = StepRun(function, f"{sharded}input.{fmt}", version)
    assert run.run(s3) == "succeeded"
    return single, sharded, run


def test_a_jsonl_job_in_shards_writes_the_single_paths_bytes(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines = [json.dumps(row) for row in rows_of(100).tolist()]
    lines[3] = "{not json"
    lines[40] = ""
    lines[77] = "[1, 2]"
    body = b"\xef\xbb\xbf" + "\r\n".join(lines).encode()

    single, sharded, run = single_and_sharded(function, s3, published_seed.version, "j1", body)

    assert output_of(s3, sharded) == output_of(s3, single)
    one, many = read_status(s3, single), read_status(s3, sharded)
    assert many.counts == one.counts and many.errors == one.errors
    assert many.shards is not None and len(many.shards) > 3
    print(run.rounds)
