"""`maas use-stack NAME` against moto's CloudFormation: a stack whose outputs mirror template.yaml's is read
once and remembered, every later command reaches its bucket with no exports, and `--local` forgets it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from maas.cli import main
from maas.cli.stack_commands import API_OUTPUT, BUCKET_OUTPUT
from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from maas.registry import ModelRegistry
from tests.support.aws import REGION
from tests.support.paths import TEMPLATE
from tests.support.registry import publish

STACK = "maas"
BUCKET = "maas-deployed-models"
API = f"https://abc123.execute-api.{REGION}.amazonaws.com"
# What main points the process at; the test's monkeypatch restores each afterwards.
TARGET_VARIABLES = ("MAAS_BUCKET", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE")


def deployed_template(outputs: dict[str, Any]) -> str:
    """A stack holding the model bucket, with `outputs` (by output key)."""
    resources = {"ModelBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": BUCKET}}}
    return json.dumps({"Resources": resources, "Outputs": {key: {"Value": v} for key, v in outputs.items()}})


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """moto's AWS, a config and data folder of the test's own (no saved stack, no local stack), and
    the variables the CLI sets restored afterwards."""
    for name in TARGET_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("MAAS_DATA_DIR", str(tmp_path / "no-local-stack"))
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


@pytest.fixture
def deployed(aws: Any) -> ModelRegistry:
    """The stack `make deploy` leaves, its outputs named as template.yaml names them; one model published."""
    template_outputs = parse_cloudformation_yaml(TEMPLATE.read_text())["Outputs"]
    assert {BUCKET_OUTPUT, API_OUTPUT} <= set(template_outputs)
    outputs = {key: f"value-of-{key}" for key in template_outputs}
    outputs |= {BUCKET_OUTPUT: BUCKET, API_OUTPUT: API}
    aws.create_stack(StackName=STACK, TemplateBody=deployed_template(outputs))
    registry = ModelRegistry(boto3.client("s3", region_name=REGION), BUCKET)
    publish(registry, name="deployed-model")
    return registry


def test_use_stack_remembers_the_outputs_and_later_commands_use_them(
    deployed: ModelRegistry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["use-stack", STACK]) == 0
    said = capsys.readouterr()
    assert said.out.startswith(f"using stack {STACK} in {REGION}: s3://{BUCKET}, API {API}")
    saved = json.loads((tmp_path / "config" / "maas" / "stack.json").read_text())
    assert (saved["stack"], saved["region"], saved["bucket"], saved["api_url"]) == (
        STACK,
        REGION,
        BUCKET,
        API,
    )

    assert main(["config", "--get", "api_url"]) == 0
    assert capsys.readouterr().out == f"{API}\n"
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["bucket"] == BUCKET and [model["name"] for model in listed["models"]] == ["deployed-model"]


def test_use_stack_local_forgets_it_and_the_cli_then_wants_a_local_stack(
    deployed: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["use-stack", STACK]) == 0
    assert main(["use-stack", "--local"]) == 0
    assert capsys.readouterr().out.endswith(
        f"forgot stack {STACK}: maas commands use the local stack (`make serve`) unless the environment "
        "names one\n"
    )

    assert main(["models", "list"]) == 2
    assert capsys.readouterr().err.startswith("error: no storage to use")


def test_the_environment_still_wins_and_use_stack_says_so(
    deployed: ModelRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAAS_BUCKET", "another")

    assert main(["use-stack", STACK]) == 0

    assert "note: MAAS_BUCKET set in this shell take precedence" in capsys.readouterr().err
    assert main(["config", "--get", "bucket"]) == 0
    assert capsys.readouterr().out == "another\n"


def test_a_stack_that_is_not_there_is_one_line_naming_it_and_its_region(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["use-stack", "nope", "--region", "eu-west-1"]) == 1

    err = capsys.readouterr().err
    assert err == (
        "error: stack nope in eu-west-1: not found; deploy it with `make deploy STACK=nope`, or give its "
        "region with --region\n"
    )
    assert not (tmp_path / "config" / "maas" / "stack.json").exists()


def test_a_stack_without_the_bucket_output_is_refused(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    aws.create_stack(StackName="other", TemplateBody=deployed_template({"Something": "x"}))

    assert main(["use-stack", "other"]) == 1

    assert capsys.readouterr().err == (
        f"error: stack other in {REGION}: expected a {BUCKET_OUTPUT} output (a maas stack deployed from "
        "template.yaml), got outputs ['Something']\n"
    )
