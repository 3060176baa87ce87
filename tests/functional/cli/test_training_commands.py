"""The `maas` command, run in-process through main() as the console script runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from maas.cli import main
from maas.registry import ManifestDraft
from tests.support.aws import moto_server
from tests.support.cli_processes import bare_environment, run_python

BUCKET = "maas-cli-test"


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP S3 endpoint, as `make serve` provides, with the CLI's settings pointed at it."""
    with moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("MAAS_BUCKET", BUCKET)
        yield endpoint


def test_train_without_publishing_writes_files_and_draft(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "seed-mlp", "--epochs", "2", "--no-publish", "--out", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "r2" in out and "parity passed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "card.md",
        "draft.json",
        "feature_importance.png",
        "loss.png",
        "metric.png",
        "model.onnx",
    ]
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


def test_domain_errors_print_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A storage target, as a user's would be: without one every storage command stops at that first.
    monkeypatch.setenv("MAAS_BUCKET", BUCKET)
    assert main(["train", "no-such-recipe", "--no-publish"]) == 1
    assert capsys.readouterr().err.startswith(
        "error: recipe: expected one of ['digits-resnet', 'minilm-embed', 'seed-mlp'"
    )

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


def test_train_with_a_config_file_search_and_quantization_publishes_fp32_then_int8(
    moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "n_samples: 300\nepochs: 2\n"
        "search:\n  space:\n    width: [4, 8]\n"
        "quantization:\n  max_degradation: 1.0\n  min_speedup: 0\n",
        encoding="utf-8",
    )

    code = main(["train", "seed-mlp", "--config", str(config), "--search", "grid", "--quantize", "int8"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "search: grid" in out and "TRIAL" in out
    assert "published seed-mlp version 1" in out
    assert "published seed-mlp version 2 (int8, from version 1)" in out
    assert main(["models", "show", "seed-mlp/versions/2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    manifest = shown["manifest"]
    assert manifest["quantization"]["base_version"] == 1
    assert manifest["params"]["n_samples"] == 300
    assert manifest["params"]["width"] in (4, 8)
    assert shown["report"][0].endswith("/models/seed-mlp/versions/2/card.md")


def test_models_show_says_where_the_model_card_is(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "seed-mlp", "--epochs", "2", "--publish", "carded"]) == 0
    capsys.readouterr()

    assert main(["models", "show", "carded"]) == 0

    err = capsys.readouterr().err
    assert f"s3://{BUCKET}/models/carded/versions/1/card.md" in err
    assert "loss.png" in err


def test_search_on_a_recipe_that_trains_nothing_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "minilm-embed", "--search", "tpe", "--no-publish"]) == 1
    assert "trains nothing" in capsys.readouterr().err


def test_a_bad_config_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("search: [1, 2]\n", encoding="utf-8")

    assert main(["train", "seed-mlp", "--config", str(config), "--no-publish"]) == 1
    assert "search: expected a mapping" in capsys.readouterr().err


def export_regressor(weights: Path, *options: str) -> int:
    """`maas export` of the BYO regressor's factory with `weights` and its one input, then `options`."""
    factory = "tests.functional.training.byo_fixtures:make_regressor"
    return main(["export", factory, "--weights", str(weights), "--input", "x:FP32:[-1,4]", *options])


def test_export_and_publish_bring_your_own_models(
    moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from tests.functional.training.byo_fixtures import make_regressor

    weights = tmp_path / "weights.pt"
    torch.save(make_regressor().state_dict(), weights)
    exported = tmp_path / "exported"
    code = export_regressor(
        weights, "--output", "y:FP32:[-1,2]", "--publish", "byo-regressor", "--out", str(exported)
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "published byo-regressor version 1" in out

    assert main(["publish", str(exported / "model.onnx"), "--name", "byo-onnx"]) == 0
    out = capsys.readouterr().out
    assert "published byo-onnx version 1" in out
    assert "FP32" in out


def test_export_refuses_a_pickled_module_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from tests.functional.training.byo_fixtures import make_regressor

    weights = tmp_path / "module.pt"
    torch.save(make_regressor(), weights)

    code = export_regressor(weights, "--no-publish")

    assert code == 1
    assert "weights_only=True" in capsys.readouterr().err


def test_a_refused_int8_version_publishes_nothing(
    moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "seed-mlp",
            "--epochs",
            "2",
            "--quantize",
            "int8",
            "--max-degradation",
            "0",
            "--publish",
            "q",
        ]
    )

    captured = capsys.readouterr()
    if code == 0:  # int8 happened to be no worse at all: then both versions are published
        assert "published q version 2 (int8" in captured.out
        return
    assert "error: quantization: expected mse to degrade by at most 0" in captured.err
    assert "raise the limit with --max-degradation" in captured.err
    assert "Nothing was published, not even fp32" in captured.err
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="models/q/").get("KeyCount", 0) == 0


def test_export_with_a_missing_weights_file_stops_before_torch_is_imported(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from maas.cli import main\n"
        "status = main(['export', 'mymodels:make_model', '--weights', 'absent.pt',\n"
        "               '--input', 'x:FP32:[-1,10]', '--no-publish'])\n"
        "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n"
        "sys.exit(status)\n"
    )
    stopped = run_python(bare_environment(tmp_path, tmp_path / "data"), "-c", probe, cwd=tmp_path)

    assert stopped.returncode == 1
    assert stopped.stdout == "torch not loaded\n"
    assert stopped.stderr == "error: --weights: expected a state_dict file at absent.pt, found none\n"
