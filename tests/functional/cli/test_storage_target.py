"""The `maas` command as a new user runs it, with no AWS variables: it finds the running local stack by the
descriptor in the data folder; with no stack and no AWS configuration it says so in one line and exits 2,
before any long work; and a reader that closes the pipe early ends it quietly."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from maas.local.data_folder import StackDescriptor, write_descriptor
from maas.registry import ModelRegistry
from tests.support.aws import REGION, moto_server
from tests.support.cli_processes import bare_environment, run_maas, run_maas_into_closed_pipe, run_python
from tests.support.registry import publish

BUCKET = "maas-cli-target"
API = "http://127.0.0.1:3000"
MODEL = "seed-mlp"
# The status of a command a shell saw killed by SIGPIPE.
BROKEN_PIPE = 141


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """A moto server holding one published model, as `make serve`'s store would; yields its endpoint."""
    with pytest.MonkeyPatch.context() as env, moto_server() as endpoint:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.setenv(name, "testing")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        publish(ModelRegistry(s3, BUCKET), name=MODEL)
        yield endpoint


@pytest.fixture
def stack_folder(store: str, tmp_path: Path) -> Path:
    """A data folder whose descriptor names the store, left by a live process (this one)."""
    folder = tmp_path / "data"
    write_descriptor(
        folder,
        StackDescriptor(
            url=API,
            endpoint_url=store,
            bucket=BUCKET,
            region=REGION,
            pid=os.getpid(),
            data_dir=str(folder),
            started_at="2025-01-01T00:00:00+00:00",
            credentials={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        ),
    )
    return folder


@pytest.fixture
def user_environment(stack_folder: Path, tmp_path: Path) -> dict[str, str]:
    return bare_environment(tmp_path, stack_folder)


def test_with_no_aws_variables_the_cli_uses_the_running_local_stack(
    store: str, user_environment: dict[str, str], tmp_path: Path
) -> None:
    listed = run_maas(user_environment, "--verbose", "models", "list", cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout
    assert listed.stderr.startswith(f"maas: storage s3://{BUCKET} at {store}; API {API} [local stack: ")
    assert listed.stderr.count("\n") == 1


def test_config_says_where_the_cli_points_and_get_prints_one_value(
    store: str, user_environment: dict[str, str], tmp_path: Path
) -> None:
    shown = run_maas(user_environment, "config", cwd=tmp_path)
    api_url = run_maas(user_environment, "config", "--get", "api_url", cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(maxsplit=1) for line in shown.stdout.splitlines())
    assert lines["endpoint"] == store and lines["bucket"] == BUCKET and lines["region"] == REGION
    assert lines["source"].startswith("local stack (")
    assert (api_url.returncode, api_url.stdout) == (0, f"{API}\n")


def test_with_no_stack_and_no_aws_configuration_one_line_and_status_2(tmp_path: Path) -> None:
    environment = bare_environment(tmp_path, tmp_path / "empty-data")

    for argv in (["models", "list"], ["config"]):
        refused = run_maas(environment, *argv, cwd=tmp_path)

        assert refused.returncode == 2
        assert refused.stdout == ""
        assert refused.stderr.startswith("error: no storage to use: start the local stack with `make serve`")
        assert refused.stderr.count("\n") == 1 and "maas use-stack NAME" in refused.stderr


def test_train_without_storage_stops_before_training(tmp_path: Path) -> None:
    environment = bare_environment(tmp_path, tmp_path / "empty-data")
    probe = (
        "import sys\n"
        "from maas.cli import main\n"
        "status = main(['train', 'seed-mlp'])\n"
        "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n"
        "sys.exit(status)\n"
    )
    stopped = run_python(environment, "-c", probe, cwd=tmp_path)

    assert stopped.returncode == 2
    assert stopped.stdout == "torch not loaded\n"
    assert stopped.stderr.startswith("error: no storage to use")


@pytest.mark.parametrize("argv", [["models", "list"], ["models", "show", MODEL]], ids=["list", "show"])
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(
    argv: list[str], user_environment: dict[str, str], tmp_path: Path
) -> None:
    status, stderr = run_maas_into_closed_pipe(user_environment, *argv, cwd=tmp_path)

    assert (status, stderr) == (BROKEN_PIPE, "")


def test_a_local_stack_that_stopped_answering_is_one_line_naming_its_endpoint(
    stack_folder: Path, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        silent = f"http://127.0.0.1:{probe.getsockname()[1]}"
    descriptor = StackDescriptor.from_json((stack_folder / "stack.json").read_text())
    write_descriptor(stack_folder, dataclasses.replace(descriptor, endpoint_url=silent))

    failed = run_maas(bare_environment(tmp_path, stack_folder), "models", "list", cwd=tmp_path)

    assert failed.returncode == 1
    assert failed.stderr == (
        f"error: listing models in s3://{BUCKET}/models/: storage unreachable (EndpointConnectionError) "
        f"at {silent}: nothing answers there; is the local stack running? Start it with `make serve`\n"
    )


def test_train_against_a_stale_endpoint_stops_before_training(tmp_path: Path) -> None:
    """The banner's exports of a stack that is gone: the first storage call fails, not after the training."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}"
    environment = {
        **bare_environment(tmp_path, tmp_path / "empty-data"),
        "AWS_ENDPOINT_URL": gone,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "MAAS_BUCKET": BUCKET,
    }
    stopped = run_maas(environment, "train", "seed-mlp", cwd=tmp_path)

    assert stopped.returncode == 1
    assert stopped.stdout == ""  # not even "trained seed-mlp"
    assert stopped.stderr.startswith(f"error: s3://{BUCKET}: storage unreachable (EndpointConnectionError)")
    assert gone in stopped.stderr
