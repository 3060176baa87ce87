"""The local stack's Step Functions: a throwaway template with the job state machine of issue 22 and a tiny
real steps function, started through boto3 against the embedded store, run by the stack.

The steps function records every step in a JSON-lines file and keeps its data in the store: plan writes
the Map's items (`round-0.json`, one per shard), each shard sleeps a little and writes its square, merge
sums the squares into `output.json`; a shard listed in the job's `broken` raises every time, so it is
retried, caught and recorded, and merge then fails the job.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.local.stack import LocalStack
from maas.local.state_machines import EXECUTIONS_FILE
from maas.local.store_state import store_folder
from tests.integration.waiting import eventually
from tests.support.local_projects import write_project
from tests.unit.local.job_state_machine import job_state_machine

WORKERS = 3

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: test}
  RecordFile: {Type: String}
Resources:
  ModelBucket:
    Type: AWS::S3::Bucket
  StepsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: steps/
      Handler: app.handler
      Runtime: python3.12
      Timeout: 60
      AutoPublishAlias: live
      Environment:
        Variables:
          RECORD_FILE: !Ref RecordFile
          MAAS_JOB_SHARD_BYTES: "67108864"
          JOB_STATE_MACHINE_ARN: !Sub
            - "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${Name}"
            - Name: !Sub maas-${Stage}-jobs
""" + job_state_machine("StepsFunction")

STEPS = """\
import json
import os
import time

import boto3


def record(step, job, **fields):
    line = json.dumps({"step": step, "job": job["id"], "module": __name__, **fields})
    with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as out:
        out.write(line + "\\n")


def handler(event, context):
    step, job = event["maas_job_step"], event["job"]
    s3 = boto3.client("s3")
    bucket = os.environ["MAAS_BUCKET"]
    folder = f"jobs/{job['id']}"
    if step == "plan":
        record("plan", job)
        key = f"{folder}/round-0.json"
        items = [{"index": i} for i in range(job["shards"])]
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(items).encode())
        return {"done": False, "failed": False, "bucket": bucket, "items_key": key, "round": 0}
    if step == "shard":
        index = event["shard"]["index"]
        started = time.time()
        time.sleep(job.get("shard_seconds", 0.2))
        if index in job.get("broken", []):
            record("shard_raised", job, index=index)
            raise ValueError(f"shard {index} is broken")
        body = json.dumps({"square": index * index}).encode()
        s3.put_object(Bucket=bucket, Key=f"{folder}/shards/{index}.json", Body=body)
        record("shard", job, index=index, started=started, ended=time.time())
        return {"index": index}
    if step == "shard_failed":
        record("shard_failed", job, index=event["shard"]["index"], failure=event["failure"])
        s3.put_object(Bucket=bucket, Key=f"{folder}/failed/{event['shard']['index']}.json", Body=b"{}")
        return None
    if step == "merge":
        record("merge", job, round=event["round"])
        failed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/failed/").get("KeyCount", 0)
        if failed:
            return {"done": False, "failed": True, "bucket": bucket, "items_key": None, "round": 0}
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/shards/").get("Contents", [])
        bodies = [s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed]
        total = sum(json.loads(body)["square"] for body in bodies)
        s3.put_object(Bucket=bucket, Key=f"{folder}/output.json", Body=json.dumps({"total": total}).encode())
        done = event["round"] + 1
        return {"done": True, "failed": False, "bucket": bucket, "items_key": None, "round": done}
    record(step, job)
    return None
"""


class Recording:
    def __init__(self, path: Path) -> None:
        self.path = path

    def steps(self, job: str, step: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [line for line in lines if line["job"] == job and (step is None or line["step"] == step)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", {"template.yaml": TEMPLATE, "steps/app.py": STEPS})


@pytest.fixture
def recording(tmp_path: Path) -> Recording:
    return Recording(tmp_path / "record.jsonl")


def local_stack(project: Path, recording: Recording, data_dir: Path | None = None) -> LocalStack:
    return LocalStack(
        port=0,
        root=project,
        embedded=True,
        parameters={"RecordFile": str(recording.path)},
        shard_workers=WORKERS,
        retry_interval_scale=0.001,
        data_dir=data_dir,
    )


@pytest.fixture
def stack(isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording) -> Iterator[LocalStack]:
    with local_stack(project, recording) as running:
        yield running


def sfn_client(stack: LocalStack) -> Any:
    return boto3.client("stepfunctions", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")


def job(**fields: Any) -> dict[str, Any]:
    return {"job": {"id": f"job-{uuid.uuid4().hex[:8]}", **fields}, "concurrency": 100}


def finished(sfn: Any, arn: str) -> dict[str, Any] | None:
    described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
    return described if described["status"] != "RUNNING" else None


def most_at_once(shards: list[dict[str, Any]]) -> int:
    """The most shards that ran at the same moment, from their recorded start and end times."""
    moments = sorted([(s["started"], 1) for s in shards] + [(s["ended"], -1) for s in shards])
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


def test_the_functions_get_the_arn_of_the_state_machine_the_stack_created(stack: LocalStack) -> None:
    arn = stack.state_machine_arn("JobStateMachine")
    described = sfn_client(stack).describe_state_machine(stateMachineArn=arn)

    assert arn == "arn:aws:states:us-east-1:123456789012:stateMachine:maas-test-jobs"
    assert os.environ["JOB_STATE_MACHINE_ARN"] == arn  # the template's !Sub, resolved locally
    definition = json.loads(described["definition"])
    assert definition["States"]["PlanJob"]["Parameters"]["FunctionName"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:StepsFunction:live"
    )
    assert "state machines: maas-test-jobs run here" in stack.banner()
    assert os.environ["MAAS_JOB_SHARD_BYTES"] == "67108864"


def test_job_sharding_settings_from_the_shell_beat_the_templates(
    isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording
) -> None:
    isolated_env.setenv("MAAS_JOB_SHARD_BYTES", "4096")
    isolated_env.setenv("MAAS_JOB_SHARD_CONCURRENCY", "7")

    with local_stack(project, recording):
        assert os.environ["MAAS_JOB_SHARD_BYTES"] == "4096"
        assert os.environ["MAAS_JOB_SHARD_CONCURRENCY"] == "7"


def test_an_execution_started_through_boto3_runs_to_succeeded_with_its_output(
    stack: LocalStack, recording: Recording
) -> None:
    sfn = sfn_client(stack)
    given = job(shards=8, shard_seconds=0.3)
    job_id = given["job"]["id"]

    arn = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn("JobStateMachine"), name=job_id, input=json.dumps(given)
    )["executionArn"]
    described = eventually(lambda: finished(sfn, arn), "the execution to end")

    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["job"] == given["job"]
    assert output["work"] == {
        "done": True,
        "failed": False,
        "bucket": stack.store.bucket,
        "items_key": None,
        "round": 1,
    }
    s3 = boto3.client("s3", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")
    total = json.loads(
        s3.get_object(Bucket=stack.store.bucket, Key=f"jobs/{job_id}/output.json")["Body"].read()
    )
    assert total == {"total": sum(i * i for i in range(8))}
    shards = recording.steps(job_id, "shard")
    assert sorted(s["index"] for s in shards) == list(range(8))
    # The Map asked for 100 at a time; the local cap is 3, and 3 environments of the function ran them.
    assert most_at_once(shards) == WORKERS
    assert len({s["module"] for s in shards}) == WORKERS


def test_a_duplicate_start_is_the_same_execution_and_runs_once(
    stack: LocalStack, recording: Recording
) -> None:
    sfn = sfn_client(stack)
    given = job(shards=2)
    machine = stack.state_machine_arn("JobStateMachine")
    name, text = given["job"]["id"], json.dumps(given)

    first = sfn.start_execution(stateMachineArn=machine, name=name, input=text)["executionArn"]
    second = sfn.start_execution(stateMachineArn=machine, name=name, input=text)["executionArn"]
    eventually(lambda: finished(sfn, first), "the execution to end")

    assert second == first
    assert len(recording.steps(name, "plan")) == 1
    assert len(recording.steps(name, "merge")) == 1
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=machine, name=name, input=text)


def test_a_shard_that_always_fails_is_retried_recorded_and_fails_the_job(
    stack: LocalStack, recording: Recording
) -> None:
    sfn = sfn_client(stack)
    given = job(shards=3, broken=[1], shard_seconds=0.05)
    job_id = given["job"]["id"]

    arn = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn("JobStateMachine"), name=job_id, input=json.dumps(given)
    )["executionArn"]
    described = eventually(lambda: finished(sfn, arn), "the execution to end")

    assert described["status"] == "FAILED"
    assert described["error"] == "JobFailed"
    assert described["cause"] == "the job's status.json says why"
    assert len(recording.steps(job_id, "shard_raised")) == 4  # the first try and 3 retries
    (recorded,) = recording.steps(job_id, "shard_failed")
    assert recorded["index"] == 1
    assert recorded["failure"]["Error"] == "ValueError"
    cause = json.loads(recorded["failure"]["Cause"])
    assert cause["errorType"] == "ValueError"
    assert cause["errorMessage"] == "shard 1 is broken"
    assert any("app.py" in line for line in cause["stackTrace"])


def test_an_execution_running_at_a_stop_finishes_after_a_restart_on_the_same_data_folder(
    isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    given = job(shards=6, shard_seconds=0.5)
    job_id = given["job"]["id"]
    given["concurrency"] = 1  # one shard at a time: the stop comes mid-Map
    with local_stack(project, recording, data_dir) as stack:
        sfn = sfn_client(stack)
        arn = sfn.start_execution(
            stateMachineArn=stack.state_machine_arn("JobStateMachine"), name=job_id, input=json.dumps(given)
        )["executionArn"]
        eventually(lambda: recording.steps(job_id, "shard"), "a first shard")
    remembered = json.loads((store_folder(data_dir) / EXECUTIONS_FILE).read_text())
    assert [e["name"] for e in remembered["executions"]] == [job_id]
    assert len(recording.steps(job_id, "shard")) < 6
    assert not recording.steps(job_id, "merge")

    with local_stack(project, recording, data_dir) as again:
        sfn = sfn_client(again)
        described = eventually(lambda: finished(sfn, arn), "the restarted execution to end")

    assert described["status"] == "SUCCEEDED"
    assert len(recording.steps(job_id, "plan")) == 2  # once per run: the steps are idempotent
    assert len(recording.steps(job_id, "merge")) == 1
    assert json.loads((store_folder(data_dir) / EXECUTIONS_FILE).read_text())["executions"] == []


def test_the_projects_template_creates_its_job_state_machine_for_the_batch_function(
    isolated_env: pytest.MonkeyPatch,
) -> None:
    with LocalStack(port=0, embedded=True) as stack:
        arn = stack.state_machine_arn("JobStateMachine")
        described = sfn_client(stack).describe_state_machine(stateMachineArn=arn)
        state_machine_variable = os.environ["MAAS_JOB_STATE_MACHINE_ARN"]
        banner = stack.banner()

    assert arn == "arn:aws:states:us-east-1:123456789012:stateMachine:maas-dev-jobs"
    assert state_machine_variable == arn
    plan = json.loads(described["definition"])["States"]["PlanJob"]
    assert (
        plan["Parameters"]["FunctionName"]
        == "arn:aws:lambda:us-east-1:123456789012:function:BatchFunction:live"
    )
    assert "state machines: maas-dev-jobs run here" in banner
