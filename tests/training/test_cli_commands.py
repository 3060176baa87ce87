"""The `maas` command, run in-process through main() as the console script runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from maas.cli import main
from maas.registry import ManifestDraft

BUCKET = "maas-cli-test"


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP S3 endpoint, as `make serve` provides, with the CLI's settings pointed at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MAAS_BUCKET", BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def test_train_without_publishing_writes_files_and_draft(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "seed-mlp", "--epochs", "2", "--no-publish", "--out", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "r2" in out and "parity passed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["draft.json", "model.onnx"]
    draft = ManifestDraft.model_validate_json((tmp_path / "draft.json").read_text())
    assert draft.params["epochs"] == 2
    assert draft.parity is not None and draft.parity.passed


def test_train_publishes_then_models_list_and_show_read_it_back(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "seed-mlp", "--epochs", "2", "--seed", "3", "--publish", "cli-model"]) == 0
    assert "published cli-model version 1" in capsys.readouterr().out

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["NAME", "LATEST", "VERSIONS"]
    assert listing[1].split() == ["cli-model", "1", "1"]

    assert main(["models", "show", "cli-model/versions/1"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert (manifest["name"], manifest["version"], manifest["lineage"]["seed"]) == ("cli-model", 1, 3)


def test_domain_errors_print_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "no-such-recipe", "--no-publish"]) == 1
    assert capsys.readouterr().err.startswith("error: recipe: expected one of ['seed-mlp']")

    assert main(["models", "show", "Not A Name"]) == 1
    assert capsys.readouterr().err.startswith("error: model name: expected")

    assert main(["train", "seed-mlp", "--publish", "Bad Name"]) == 1
    assert capsys.readouterr().err.startswith("error: model name: expected")


def test_models_show_of_a_missing_model_is_an_error(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "show", "absent"]) == 1
    assert "error: model 'absent'" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "seed-mlp", "--publish", "x", "--no-publish"])

    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
