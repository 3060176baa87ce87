"""A training run whose publish fails keeps its files on disk and prints the command that publishes them;
that command then publishes them, with the metrics and card the run measured."""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.cli import main
from maas.registry import ManifestDraft, ModelRegistry
from tests.support.aws import moto_server

KEPT = re.compile(r"model is kept in (?P<folder>\S+): publish it (alone )?with `(?P<command>[^`]+)`")


@dataclass(frozen=True)
class Target:
    s3: Any
    bucket: str

    def create_bucket(self) -> None:
        self.s3.create_bucket(Bucket=self.bucket)


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Target]:
    """A real S3 endpoint where the CLI's bucket does not exist (yet), and a data folder of the test's own.
    The bucket's name is the test's own too: moto's servers in one process share their state."""
    bucket = f"maas-kept-{uuid.uuid4().hex[:12]}"
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("MAAS_BUCKET", bucket)
        monkeypatch.setenv("MAAS_DATA_DIR", str(tmp_path / "data"))
        yield Target(boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"), bucket)


def test_a_failed_publish_keeps_the_run_and_its_command_publishes_it(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bucket answers, so training starts; the publish then fails at its signature (no such KMS key), the
    # way a publish fails after the training: a store that went away, a policy, a key.
    target.create_bucket()
    monkeypatch.setenv("MAAS_MANIFEST_SIGNING", "kms:alias/maas-no-such-key")
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

    monkeypatch.delenv("MAAS_MANIFEST_SIGNING")
    assert main(command[1:]) == 0

    # The failed publish had claimed a version number; claims are never reused, so this one is the next.
    published = re.search(r"published kept-model version (\d+)", capsys.readouterr().out)
    assert published is not None
    manifest = ModelRegistry(target.s3, target.bucket).manifest("kept-model", int(published[1]))
    draft = ManifestDraft.model_validate_json((folder / "draft.json").read_bytes())
    assert manifest.metrics == draft.metrics
    assert manifest.parity == draft.parity
    assert "card.md" in [artifact.path for artifact in manifest.artifacts]


def test_a_refused_int8_publishes_nothing_and_keeps_the_fp32_model_to_publish_alone(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target.create_bucket()
    # No int8 graph runs a thousand times as fast as fp32: the speed gate refuses it, whatever the machine.
    gates = ["--max-degradation", "1000", "--min-int8-speedup", "1000"]

    code = main(["train", "seed-mlp", "--epochs", "2", "--quantize", "int8", *gates, "--publish", "q"])

    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("error: quantization: expected int8 to run at least 1000x as fast as fp32")
    assert "--min-int8-speedup" in error and error.count("\n") == 1
    assert "Nothing was published, not even fp32" in error
    assert target.s3.list_objects_v2(Bucket=target.bucket).get("KeyCount", 0) == 0
    found = KEPT.search(error)
    assert found is not None, error
    assert not (Path(found["folder"]) / "int8").exists()

    assert main(shlex.split(found["command"])[1:]) == 0

    out = capsys.readouterr().out
    assert "published q version 1" in out and "int8" not in out
    assert ModelRegistry(target.s3, target.bucket).manifest("q", 1).quantization is None
