"""Issue 21's acceptance: `make serve` keeps what it was given. A stack on a data folder gets two models, an
alias moved once and a finished batch job; stopped and started again on the same folder, it has all of it
on the same endpoint, and the registry numbers the next version after the last one.

Also what a user meets when a port is taken (one line, exit status 1) and how `maas serve --reset` behaves."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from maas.local.data_folder import running_stack
from maas.local.stack import LocalStack
from maas.registry.admin import RegistryAdmin
from maas.training import TrainedModel, publish_trained
from tests.integration.store_process import run_maas
from tests.integration.waiting import eventually
from tests.support.registry import publish
from tests.support.s3_objects import read_object


def kept_stack(data_dir: Path) -> LocalStack:
    return LocalStack(port=0, embedded=True, queue_visibility_seconds=1, data_dir=data_dir)


def test_a_restarted_stack_has_its_models_aliases_history_and_jobs_on_the_same_endpoint(
    isolated_env: pytest.MonkeyPatch,
    seed_model: TrainedModel,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    job_folder = f"jobs/seed-mlp/job-{uuid.uuid4().hex[:12]}/"

    with kept_stack(data_dir) as stack:
        publish_trained(seed_model, stack.registry)
        publish_trained(seed_model, stack.registry)
        assert publish(stack.registry, b"other", name="other-model") == 1
        admin = RegistryAdmin(stack.registry)
        admin.set_alias("seed-mlp", "production", 1, by="test")
        admin.set_alias("seed-mlp", "production", 2, by="test", reason="v2 is better")
        s3 = boto3.client("s3", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")
        bucket = stack.store.bucket
        s3.put_object(Bucket=bucket, Key=job_folder + "input.jsonl", Body=b"[" + b"0.5," * 9 + b"0.5]\n")
        status = json.loads(eventually(lambda: read_object(s3, bucket, job_folder + "status.json"), "status"))
        assert status["state"] == "succeeded", status
        output = read_object(s3, bucket, job_folder + "output.jsonl")
        aliases = stack.registry.aliases("seed-mlp")
        endpoint = stack.store.endpoint_url
        assert running_stack(data_dir) is not None
        assert running_stack(data_dir).url == stack.url  # type: ignore[union-attr]
    assert running_stack(data_dir) is None

    with kept_stack(data_dir) as again:
        assert again.store.endpoint_url == endpoint
        registry = again.registry
        assert registry.versions("seed-mlp") == [1, 2]
        assert registry.versions("other-model") == [1]
        assert registry.aliases("seed-mlp") == aliases
        history = registry.aliases("seed-mlp")["production"].history
        assert [(entry.from_version, entry.to_version) for entry in history] == [(None, 1), (1, 2)]
        s3 = boto3.client("s3", endpoint_url=again.store.endpoint_url, region_name="us-east-1")
        assert read_object(s3, again.store.bucket, job_folder + "output.jsonl") == output
        kept_status = read_object(s3, again.store.bucket, job_folder + "status.json")
        assert kept_status is not None and json.loads(kept_status) == status
        assert publish_trained(seed_model, registry).version == 3

    assert "Traceback" not in capfd.readouterr().err


def test_a_stack_without_a_data_folder_keeps_nothing(isolated_env: pytest.MonkeyPatch) -> None:
    with LocalStack(port=0, embedded=True) as stack:
        publish(stack.registry, b"fleeting", name="fleeting")
    with LocalStack(port=0, embedded=True) as stack:
        assert stack.registry.versions("fleeting") == []


# ---- what `maas serve` says, as a user runs it


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("which", ["--port", "--store-port"])
def test_a_busy_port_is_one_line_saying_what_to_do(which: str, taken_port: int, tmp_path: Path) -> None:
    ports = (
        ["--port", str(taken_port)] if which == "--port" else ["--port", "0", "--store-port", str(taken_port)]
    )

    completed = run_maas("serve", "--no-llm", *ports, data_dir=tmp_path / "data")

    assert completed.returncode == 1, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert f"127.0.0.1:{taken_port} is already in use" in lines[0]
    assert ("make serve PORT=" in lines[0]) if which == "--port" else ("--store-port" in lines[0])
    assert running_stack(tmp_path / "data") is None


def test_reset_deletes_the_saved_store_and_keeps_the_remembered_port(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with kept_stack(data_dir) as stack:
        publish(stack.registry, b"first", name="to-forget")
        endpoint = stack.store.endpoint_url

    completed = run_maas("serve", "--reset", data_dir=data_dir)

    assert completed.returncode == 0, completed.stderr
    assert "deleted the saved local store" in completed.stdout
    with kept_stack(data_dir) as stack:
        assert stack.registry.versions("to-forget") == []
        assert stack.store.endpoint_url == endpoint


def test_reset_is_refused_while_a_stack_serves_from_the_folder(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with kept_stack(data_dir) as stack:
        publish(stack.registry, b"kept", name="kept")

        completed = run_maas("serve", "--reset", data_dir=data_dir)

        assert completed.returncode == 1
        assert completed.stderr.count("\n") == 1 and "stop it first" in completed.stderr
        assert stack.registry.versions("kept") == [1]
