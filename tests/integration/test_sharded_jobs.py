"""Issue 22's acceptance, end to end on the local stack: jobs larger than MAAS_JOB_SHARD_BYTES run as shards
through template.yaml's JobStateMachine (planner, Distributed Map, merge), interpreted locally with real
concurrency, and give the output the single-invocation path gives for the same input, byte for byte.

The reference outputs come from a stack with the default shard size (every input here is far below it, so
each job runs in one invocation); the sharded runs from a stack whose shard size is forced small. Faults are
real storage failures: botocore raises a connection error for one shard's ranged GET of the input, through
the S3 client the in-process functions share.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from maas.aws_clients import s3_client
from maas.local.stack import LocalStack
from maas.training import TrainedModel, publish_trained
from tests.integration.waiting import eventually
from tests.support.s3_objects import read_object

SHARD_BYTES = 256 * 1024
JOB_WAIT_SECONDS = 240.0
# Shard workers of the local Map (the template's Map asks for more; the stack caps it).
SHARD_WORKERS = 4


# ---- inputs: the same bytes go through both stacks


def jsonl_input(count: int = 200_000) -> bytes:
    """200,000 rows of ten floats, with a bad line now and then: error lines carry global line numbers."""
    rows = np.round(np.random.default_rng(22).normal(size=(count, 10)), 4).tolist()
    lines = [json.dumps(row) for row in rows]
    for position in range(7, count, 9_973):
        lines[position] = "{not json" if position % 2 else json.dumps(rows[position][:3])
    lines[count // 2] = ""
    return ("\n".join(lines) + "\n").encode()


def csv_input(records: int = 14_000) -> bytes:
    """Ten numeric cells a record, some quoted, with a header; some records carry a quoted cell that spans
    lines (each such record is one line error, numbered where it starts). Long multi-line cells straddle
    every nominal cut: most hold quotes, so the planner can prove the cut after them; the one at the second
    cut holds none for 100 KB, so the planner must assume a cut inside it, and the merge must find that out
    and run the next shard again from the cell's end."""
    generator = np.random.default_rng(23)
    out = io.StringIO()
    out.write(",".join(f"f{i}" for i in range(10)) + "\n")
    next_cut = SHARD_BYTES
    for index in range(records):
        cells = [f"{value:.4f}" for value in generator.normal(size=10)]
        if index % 17 == 3:
            cells[2] = f'"{cells[2]}"'
        if index % 211 == 5:
            cells[4] = '"1.5\n2.5,\n""quoted"" text"'
        if out.tell() > next_cut - 2_000:
            if next_cut == 2 * SHARD_BYTES:
                text = "\n".join(f"plain line {n}, no quotes at all" for n in range(3_300))
            else:
                text = "\n".join(f'line {n}, with a comma and a quote "" inside' for n in range(400))
            cells[6] = f'"{text}"'
            next_cut += SHARD_BYTES
        out.write(",".join(cells) + "\n")
    return out.getvalue().encode()


def npy_input(count: int = 120_000) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(24).normal(size=(count, 10)).astype(np.float32))
    return buffer.getvalue()


INPUTS: dict[str, Callable[[], bytes]] = {"jsonl": jsonl_input, "csv": csv_input, "npy": npy_input}


# ---- running jobs


def run_job(stack: LocalStack, s3: Any, body: bytes, input_format: str, job_id: str | None = None) -> str:
    """Upload `body` as a job's input and wait for its status; the job's folder."""
    folder = f"jobs/seed-mlp/{job_id or uuid.uuid4().hex[:12]}/"
    s3.put_object(Bucket=stack.store.bucket, Key=f"{folder}input.{input_format}", Body=body)
    eventually(
        lambda: read_object(s3, stack.store.bucket, folder + "status.json"),
        f"the status of {folder}",
        timeout=JOB_WAIT_SECONDS,
    )
    return folder


def status_of(s3: Any, stack: LocalStack, folder: str) -> dict[str, Any]:
    body = read_object(s3, stack.store.bucket, folder + "status.json")
    assert body is not None, f"{folder}status.json: expected it, got none"
    status: dict[str, Any] = json.loads(body)
    return status


def output_of(s3: Any, stack: LocalStack, folder: str) -> bytes:
    return bytes(s3.get_object(Bucket=stack.store.bucket, Key=folder + "output.jsonl")["Body"].read())


def store_client(stack: LocalStack) -> Any:
    return boto3.client("s3", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")


@pytest.fixture(scope="module")
def single_path(
    isolated_module_env: pytest.MonkeyPatch, seed_model: TrainedModel
) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Each input's output and status from the single-invocation path (the default shard size)."""
    isolated_module_env.delenv("MAAS_JOB_SHARD_BYTES", raising=False)
    answers: dict[str, tuple[bytes, dict[str, Any]]] = {}
    with LocalStack(port=0, embedded=True, queue_visibility_seconds=1) as stack:
        publish_trained(seed_model, stack.registry)
        s3 = store_client(stack)
        for input_format, make in INPUTS.items():
            folder = run_job(stack, s3, make(), input_format)
            status = status_of(s3, stack, folder)
            assert status["state"] == "succeeded" and not status.get("shards"), status
            answers[input_format] = (output_of(s3, stack, folder), status)
    return answers


@pytest.fixture(scope="module")
def stack(
    single_path: dict[str, tuple[bytes, dict[str, Any]]],
    isolated_module_env: pytest.MonkeyPatch,
    seed_model: TrainedModel,
) -> Iterator[LocalStack]:
    isolated_module_env.setenv("MAAS_JOB_SHARD_BYTES", str(SHARD_BYTES))
    with LocalStack(
        port=0,
        embedded=True,
        queue_visibility_seconds=1,
        shard_workers=SHARD_WORKERS,
        retry_interval_scale=0.001,
    ) as running:
        publish_trained(seed_model, running.registry)
        yield running


@pytest.fixture(scope="module")
def s3(stack: LocalStack) -> Any:
    return store_client(stack)


# ---- storage faults for one shard


class FailingRangedReads:
    """Fails the ranged GETs of one input that start at `start`: `times` of them, or every one (None)."""

    def __init__(self, input_key: str, start: int, times: int | None) -> None:
        self.input_key = input_key
        self.range_prefix = f"bytes={start}-"
        self.times = times
        self.failed = 0
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") != self.input_key or not str(params.get("Range", "")).startswith(
            self.range_prefix
        ):
            return
        with self._lock:
            if self.times is not None and self.failed >= self.times:
                return
            self.failed += 1
        raise EndpointConnectionError(endpoint_url="http://store.invalid")


def jsonl_cut(body: bytes, nominal: int) -> int:
    """Where the planner cuts jsonl at `nominal`: the byte after the first newline at or after nominal-1."""
    return body.index(b"\n", nominal - 1) + 1


@pytest.fixture
def faults(stack: LocalStack) -> Iterator[Callable[[FailingRangedReads], None]]:
    """Registers a fault on the S3 client the in-process functions share, and removes it afterwards."""
    client = s3_client(stack.settings.endpoint_url)
    registered: list[FailingRangedReads] = []

    def register(fault: FailingRangedReads) -> None:
        client.meta.events.register("before-parameter-build.s3.GetObject", fault)
        registered.append(fault)

    yield register
    for fault in registered:
        client.meta.events.unregister("before-parameter-build.s3.GetObject", fault)


# ---- acceptance


@pytest.mark.parametrize("input_format", list(INPUTS))
def test_a_sharded_job_gives_the_single_path_output_byte_for_byte(
    stack: LocalStack, s3: Any, single_path: dict[str, tuple[bytes, dict[str, Any]]], input_format: str
) -> None:
    body = INPUTS[input_format]()
    assert len(body) > 4 * SHARD_BYTES

    folder = run_job(stack, s3, body, input_format)

    status = status_of(s3, stack, folder)
    expected_output, expected_status = single_path[input_format]
    assert status["state"] == "succeeded", status.get("error")
    assert len(status["shards"]) >= 4
    assert output_of(s3, stack, folder) == expected_output
    for field in ("counts", "errors", "csv_header", "model_version", "input_bytes"):
        assert status[field] == expected_status[field], field
    shard_lines = sum(shard["succeeded"] + shard["failed"] for shard in status["shards"])
    assert shard_lines == status["counts"]["lines"]
    # Shard outputs are gone once stitched; the plan and results stay as the job's record.
    left = s3.list_objects_v2(Bucket=stack.store.bucket, Prefix=folder + "shards/").get("Contents", [])
    assert not [item["Key"] for item in left if item["Key"].endswith(".jsonl")]
    if input_format == "csv":
        # The cut assumed inside the quote-free cell was found wrong, and its shard ran again from the
        # cell's end: two results for that shard, and a second round of the Map.
        keys = [item["Key"].rpartition("/")[2] for item in left]
        assert "round-1.json" in keys, keys
        assert len([key for key in keys if re.fullmatch(r"00002-\d+\.json", key)]) == 2, keys


def test_a_shard_that_fails_twice_then_succeeds_still_gives_identical_output(
    stack: LocalStack,
    s3: Any,
    single_path: dict[str, tuple[bytes, dict[str, Any]]],
    faults: Callable[[FailingRangedReads], None],
) -> None:
    body = jsonl_input()
    job_id = uuid.uuid4().hex[:12]
    fault = FailingRangedReads(
        f"jobs/seed-mlp/{job_id}/input.jsonl", jsonl_cut(body, 3 * SHARD_BYTES), times=2
    )
    faults(fault)

    folder = run_job(stack, s3, body, "jsonl", job_id)

    assert fault.failed == 2
    assert status_of(s3, stack, folder)["state"] == "succeeded"
    assert output_of(s3, stack, folder) == single_path["jsonl"][0]


def test_a_shard_that_always_fails_fails_the_job_with_a_status_naming_it(
    stack: LocalStack, s3: Any, faults: Callable[[FailingRangedReads], None]
) -> None:
    body = jsonl_input()
    job_id = uuid.uuid4().hex[:12]
    start = jsonl_cut(body, 3 * SHARD_BYTES)
    fault = FailingRangedReads(f"jobs/seed-mlp/{job_id}/input.jsonl", start, times=None)
    faults(fault)

    folder = run_job(stack, s3, body, "jsonl", job_id)

    status = status_of(s3, stack, folder)
    assert status["state"] == "failed"
    assert "shard 3" in status["error"] and str(start) in status["error"], status["error"]
    assert "unreachable" in status["error"] or "EndpointConnectionError" in status["error"]
    assert fault.failed >= 3  # every retry went to the store again
    assert read_object(s3, stack.store.bucket, folder + "output.jsonl") is None


def test_a_duplicate_s3_event_gives_one_execution_and_one_output(stack: LocalStack, s3: Any) -> None:
    body = npy_input(40_000)
    folder = run_job(stack, s3, body, "npy")
    first_status = status_of(s3, stack, folder)
    sqs = boto3.client("sqs", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")
    notification = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": stack.store.bucket},
                    "object": {"key": folder + "input.npy", "size": len(body)},
                },
            }
        ]
    }

    for _ in range(2):
        sqs.send_message(QueueUrl=stack.queue_url("JobsQueue"), MessageBody=json.dumps(notification))
    eventually(lambda: _queue_empty(sqs, stack.queue_url("JobsQueue")), "the duplicate events handled")

    assert status_of(s3, stack, folder) == first_status
    stepfunctions = boto3.client(
        "stepfunctions", endpoint_url=stack.store.endpoint_url, region_name="us-east-1"
    )
    machine = stepfunctions.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    job_id = folder.rstrip("/").rpartition("/")[2]
    executions = [
        execution
        for execution in stepfunctions.list_executions(stateMachineArn=machine)["executions"]
        if execution["name"].startswith(job_id)
    ]
    assert len(executions) == 1


def _queue_empty(sqs: Any, url: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    visible: str = attributes["ApproximateNumberOfMessages"]
    in_flight: str = attributes["ApproximateNumberOfMessagesNotVisible"]
    return visible == in_flight == "0"
