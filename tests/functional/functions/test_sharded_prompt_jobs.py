"""A text generator's jobs in shards: the same per-line answers, errors and token counts as the single path,
with the prompt-job shard size (MAAS_PROMPT_JOB_SHARD_BYTES) deciding, over the tiny test decoder."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from maas.registry import Manifest
from tests.support.aws import TEST_BUCKET
from tests.support.functions import start_function
from tests.support.jobs import Context, StepRun, job_event, read_lines, read_status, submit

MODEL = "tiny-llm"
# Fields an answer gets from its run, not from its body: never equal between two runs.
RUN_FIELDS = ("id", "created")
PROMPT_SHARD_BYTES = 300


def body_of(line: int) -> dict[str, Any]:
    if line % 2:
        return {"prompt": f"Item {line} is", "max_tokens": 3, "temperature": 0}
    return {"messages": [{"role": "user", "content": f"Say {line}"}], "max_tokens": 2, "temperature": 0}


def prompts(count: int, bad: dict[int, bytes]) -> bytes:
    lines = [bad.get(line, json.dumps(body_of(line)).encode()) for line in range(1, count + 1)]
    return b"\n".join(lines) + b"\n"


def without_run_fields(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in line.items() if key not in RUN_FIELDS} for line in lines]


def test_a_prompt_job_in_shards_answers_as_the_single_path_with_global_line_numbers(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest
) -> None:
    function = start_function(
        monkeypatch, "batch", MAAS_INTRA_OP_THREADS="1", MAAS_PROMPT_JOB_SHARD_BYTES=str(PROMPT_SHARD_BYTES)
    )
    body = prompts(24, {3: b"{not json", 17: b"", 22: b'{"prompt": "Hi", "temperature": 9}'})
    single, sharded = f"jobs/{MODEL}/one/", f"jobs/{MODEL}/many/"
    submit(s3, single + "input.jsonl", body)
    submit(s3, sharded + "input.jsonl", body)
    function.lambda_handler(job_event(single + "input.jsonl"), Context())
    run = StepRun(function, sharded + "input.jsonl", published_llm.version)

    assert run.run(s3) == "succeeded"

    assert without_run_fields(read_lines(s3, sharded + "output.jsonl")) == without_run_fields(
        read_lines(s3, single + "output.jsonl")
    )
    one, many = read_status(s3, single), read_status(s3, sharded)
    assert (many.counts, many.errors, many.tokens) == (one.counts, one.errors, one.tokens)
    assert [error.line for error in many.errors] == [3, 17, 22]
    assert many.shards is not None and len(many.shards) >= 4
    assert many.tokens is not None and many.tokens.completion_tokens > 0


def test_a_text_generators_job_is_sharded_past_the_prompt_shard_size_and_refuses_csv_in_its_plan(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest
) -> None:
    stepfunctions = boto3.client("stepfunctions", region_name="us-east-1")
    machine = stepfunctions.create_state_machine(
        name="maas-test-jobs",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/maas-test-jobs",
    )["stateMachineArn"]
    function = start_function(
        monkeypatch,
        "batch",
        MAAS_INTRA_OP_THREADS="1",
        MAAS_PROMPT_JOB_SHARD_BYTES=str(PROMPT_SHARD_BYTES),
        MAAS_JOB_STATE_MACHINE_ARN=machine,
    )
    # Well below the shard size of other jobs (64 MiB), above a prompt job's.
    key = f"jobs/{MODEL}/big/input.jsonl"
    submit(s3, key, prompts(20, {}))
    csv_key = f"jobs/{MODEL}/table/input.csv"
    submit(s3, csv_key, b"Hello,there\n" * 100)

    function.lambda_handler(job_event(key), Context())
    run = StepRun(function, csv_key, published_llm.version)

    (started,) = stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    document = json.loads(stepfunctions.describe_execution(executionArn=started["executionArn"])["input"])
    assert document["job"] == {"input_key": key, "model_version": published_llm.version}
    assert run.run(s3) == "failed"
    status = read_status(s3, f"jobs/{MODEL}/table/")
    assert status.error is not None and status.error.startswith(
        f"input.csv: expected input.jsonl, as model '{MODEL}' v{published_llm.version} generates text"
    )
    listed = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=f"jobs/{MODEL}/big/")["Contents"]
    assert [item["Key"] for item in listed] == [key]


def test_a_prompt_shard_out_of_time_fails_the_job_at_its_line_saying_to_lower_the_prompt_shard_size(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest
) -> None:
    function = start_function(
        monkeypatch, "batch", MAAS_INTRA_OP_THREADS="1", MAAS_PROMPT_JOB_SHARD_BYTES=str(PROMPT_SHARD_BYTES)
    )
    folder = f"jobs/{MODEL}/many/"
    submit(s3, folder + "input.jsonl", prompts(24, {}))
    run = StepRun(function, folder + "input.jsonl", published_llm.version)
    run.shard_context = lambda shard: Context(remaining_ms=5_000) if shard["index"] > 0 else None

    assert run.run(s3) == "failed"

    (first,) = [
        json.loads(s3.get_object(Bucket=TEST_BUCKET, Key=item["Key"])["Body"].read())
        for item in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=f"{folder}shards/00000-")["Contents"]
        if item["Key"].endswith("-0.json")
    ]
    error = read_status(s3, folder).error
    assert error is not None and error.startswith(f"job: shard 1 (input bytes {first['end']}-")
    assert error.endswith(
        "failed: JobOutOfTime: job: expected each shard to finish within the function's timeout, got "
        f"through 0 lines of this one, stopping at line {first['lines'] + 1}; lower "
        "MAAS_PROMPT_JOB_SHARD_BYTES (template parameter PromptJobShardBytes) for smaller shards"
    )
