"""Which storage a `maas` command uses: the environment, then a remembered deployed stack, then the running
local stack's descriptor, else a one-line refusal naming both fixes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maas.cli.target import (
    NoStorageTarget,
    SavedStack,
    forget_stack,
    read_saved_stack,
    resolve_target,
    save_stack,
    saved_stack_path,
)
from maas.errors import ConfigurationError
from maas.local.data_folder import StackDescriptor, write_descriptor

LOCAL_ENDPOINT = "http://127.0.0.1:4567"
LOCAL_API = "http://127.0.0.1:3000"
DEPLOYED = SavedStack(stack="maas", region="eu-west-1", bucket="maas-deployed", api_url="https://api.example")


def descriptor(folder: Path, pid: int) -> StackDescriptor:
    return StackDescriptor(
        url=LOCAL_API,
        endpoint_url=LOCAL_ENDPOINT,
        bucket="maas-local",
        region="us-east-1",
        pid=pid,
        data_dir=str(folder),
        started_at="2025-01-01T00:00:00+00:00",
        credentials={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """An environment whose config folder and data folder are the test's own, with nothing in them."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "MAAS_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def running_stack(places: dict[str, str]) -> StackDescriptor:
    """A descriptor left by a live process (this one)."""
    found = descriptor(Path(places["MAAS_DATA_DIR"]), os.getpid())
    write_descriptor(Path(places["MAAS_DATA_DIR"]), found)
    return found


def test_with_nothing_configured_the_refusal_names_both_fixes(places: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(NoStorageTarget) as refused:
        resolve_target(places, project_root=tmp_path)

    message = refused.value.message
    assert "\n" not in message
    assert "`make serve`" in message and "`maas use-stack NAME`" in message and "MAAS_BUCKET" in message


def test_an_empty_bucket_variable_counts_as_unset(places: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(NoStorageTarget):
        resolve_target({**places, "MAAS_BUCKET": "  "}, project_root=tmp_path)


def test_a_descriptor_left_by_a_dead_stack_is_no_target(places: dict[str, str], tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_descriptor(Path(places["MAAS_DATA_DIR"]), descriptor(tmp_path, gone.pid))

    with pytest.raises(NoStorageTarget):
        resolve_target(places, project_root=tmp_path)


def test_the_running_local_stack_gives_endpoint_bucket_region_credentials_and_api(
    places: dict[str, str], running_stack: StackDescriptor, tmp_path: Path
) -> None:
    target = resolve_target(places, project_root=tmp_path)

    assert (target.source, target.bucket, target.endpoint_url, target.api_url) == (
        "local stack",
        "maas-local",
        LOCAL_ENDPOINT,
        LOCAL_API,
    )
    environ = {**places, "AWS_PROFILE": "work"}
    target.apply(environ)
    assert environ["AWS_ENDPOINT_URL"] == LOCAL_ENDPOINT
    assert environ["MAAS_BUCKET"] == "maas-local"
    assert environ["AWS_REGION"] == environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in environ


def test_a_remembered_deployed_stack_wins_over_the_local_one(
    places: dict[str, str], running_stack: StackDescriptor, tmp_path: Path
) -> None:
    save_stack(places, DEPLOYED)

    target = resolve_target(places, project_root=tmp_path)

    assert (target.source, target.bucket, target.endpoint_url, target.region, target.api_url) == (
        "deployed stack",
        "maas-deployed",
        None,
        "eu-west-1",
        "https://api.example",
    )
    assert target.environment == {
        "MAAS_BUCKET": "maas-deployed",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert target.fields()["endpoint"] == "AWS S3 in eu-west-1"


def test_the_environment_wins_over_everything_and_keeps_its_own_settings(
    places: dict[str, str], running_stack: StackDescriptor, tmp_path: Path
) -> None:
    save_stack(places, DEPLOYED)

    target = resolve_target(
        {**places, "MAAS_BUCKET": "mine", "AWS_REGION": "us-west-2"}, project_root=tmp_path
    )

    assert (target.source, target.bucket, target.endpoint_url, target.region) == (
        "environment",
        "mine",
        None,
        "us-west-2",
    )
    assert target.environment == {} and target.api_url is None


def test_the_environment_naming_the_saved_bucket_gets_its_api(places: dict[str, str], tmp_path: Path) -> None:
    save_stack(places, DEPLOYED)

    target = resolve_target({**places, "MAAS_BUCKET": "maas-deployed"}, project_root=tmp_path)

    assert (target.source, target.api_url, target.region) == (
        "environment",
        "https://api.example",
        "eu-west-1",
    )


def test_the_banners_endpoint_without_a_bucket_takes_the_local_stacks_bucket_not_the_default(
    places: dict[str, str], running_stack: StackDescriptor, tmp_path: Path
) -> None:
    target = resolve_target({**places, "AWS_ENDPOINT_URL": LOCAL_ENDPOINT + "/"}, project_root=tmp_path)

    assert (target.source, target.bucket, target.api_url) == ("environment", "maas-local", LOCAL_API)
    assert target.environment == {"MAAS_BUCKET": "maas-local"}


def test_another_endpoint_without_a_bucket_says_the_default_bucket_is_used(
    places: dict[str, str], tmp_path: Path
) -> None:
    target = resolve_target({**places, "AWS_ENDPOINT_URL": "http://minio:9000"}, project_root=tmp_path)

    assert (target.bucket, target.endpoint_url) == ("maas-models", "http://minio:9000")
    assert "MAAS_BUCKET unset" in target.summary()


def test_the_summary_is_one_line_naming_bucket_endpoint_api_and_why(
    places: dict[str, str], running_stack: StackDescriptor, tmp_path: Path
) -> None:
    summary = resolve_target(places, project_root=tmp_path).summary()

    assert summary == (
        f"maas: storage s3://maas-local at {LOCAL_ENDPOINT}; API {LOCAL_API} "
        f"[local stack: {running_stack.data_dir}, pid {os.getpid()}]"
    )


def test_a_saved_stack_goes_in_the_xdg_config_folder_and_is_forgotten(places: dict[str, str]) -> None:
    path = save_stack(places, DEPLOYED)

    assert path == Path(places["XDG_CONFIG_HOME"]) / "maas" / "stack.json" == saved_stack_path(places)
    saved = read_saved_stack(places)
    assert saved is not None and (saved.stack, saved.bucket) == ("maas", "maas-deployed") and saved.saved_at
    assert forget_stack(places) == saved
    assert read_saved_stack(places) is None and forget_stack(places) is None


def test_without_xdg_config_home_the_stack_is_saved_under_the_home_folder() -> None:
    assert saved_stack_path({"XDG_CONFIG_HOME": ""}) == Path.home() / ".config" / "maas" / "stack.json"


def test_a_damaged_saved_stack_names_its_file_and_the_fix(places: dict[str, str], tmp_path: Path) -> None:
    path = saved_stack_path(places)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    with pytest.raises(ConfigurationError) as refused:
        resolve_target(places, project_root=tmp_path)

    assert str(path) in refused.value.message and "maas use-stack --local" in refused.value.message
