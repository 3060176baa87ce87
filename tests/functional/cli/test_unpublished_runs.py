"""A training run whose publish fails keeps its files on disk and prints the command that publishes them;
that command then publishes them, with the metrics and card the run measured."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from maas.cli import main
from maas.registry import ManifestDraft, ModelRegistry
from tests.support.aws import moto_server

MISSING_BUCKET = "maas-not-created-yet"
KEPT = re.compile(r"the trained model is kept in (?P<folder>\S+): publish it with `(?P<command>[^`]+)`")


@pytest.fixture
def endpoint_without_the_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A real S3 endpoint whose bucket does not exist (yet), and a data folder of the test's own."""
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("MAAS_BUCKET", MISSING_BUCKET)
        monkeypatch.setenv("MAAS_DATA_DIR", str(tmp_path / "data"))
        yield endpoint


def test_a_failed_publish_keeps_the_run_and_its_command_publishes_it(
    endpoint_without_the_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "seed-mlp", "--epochs", "2", "--publish", "kept-model"]) == 1

    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    found = KEPT.search(error)
    assert found is not None, error
    folder = Path(found["folder"])
    assert folder.parent == tmp_path / "data" / "unpublished"
    assert folder.name.startswith("kept-model-")
    assert {"model.onnx", "draft.json", "card.md"} <= {path.name for path in folder.iterdir()}
    command = shlex.split(found["command"])
    assert command == ["maas", "publish", str(folder), "--name", "kept-model"]

    s3 = boto3.client("s3", endpoint_url=endpoint_without_the_bucket, region_name="us-east-1")
    s3.create_bucket(Bucket=MISSING_BUCKET)
    assert main(command[1:]) == 0

    assert "published kept-model version 1" in capsys.readouterr().out
    manifest = ModelRegistry(s3, MISSING_BUCKET).manifest("kept-model", 1)
    draft = ManifestDraft.model_validate_json((folder / "draft.json").read_bytes())
    assert manifest.metrics == draft.metrics
    assert manifest.parity == draft.parity
    assert "card.md" in [artifact.path for artifact in manifest.artifacts]
