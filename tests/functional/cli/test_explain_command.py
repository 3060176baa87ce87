"""`maas explain REF --input FILE` against moto: the real seed model, and a real linear digits classifier
whose attributions are known in closed form, through the same main() the console script runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

from maas.cli import main
from maas.cli.explain import METHODS, NAMED_BASELINES
from maas.explain.parameters import Method, NamedBaseline
from maas.infer_types import InferenceRequest, Tensor
from maas.protocol.explain_codec import decode_explain_parameters
from maas.registry import ManifestDraft, ModelRegistry, parse_ref
from maas.registry.manifest import MODEL_FILE
from maas.runtime import signature_of
from maas.service.inference import InferenceService
from tests.support.cli import fail

if TYPE_CHECKING:
    from maas.training import TrainedModel

SEED = "seed-mlp"
DIGITS = "digits-linear"
ROWS = np.random.default_rng(5).normal(size=(2, 10)).astype(np.float32)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def seed(cli_registry: ModelRegistry, seed_model: TrainedModel) -> None:
    from maas.training import publish_trained

    publish_trained(seed_model, cli_registry)


@pytest.fixture(scope="module")
def digits_weights() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A least-squares linear classifier of sklearn's 8x8 digits: [64, 10] weights and [10] biases.

    A real image classifier in milliseconds, and linear: ablating pixel p to 0 lowers class t's score by
    exactly W[p, t] * x[p], so its explanation has a known answer."""
    digits = load_digits()
    pixels = digits.images.reshape(len(digits.images), -1)
    design = np.hstack([pixels, np.ones((len(pixels), 1))])
    solution, *_ = np.linalg.lstsq(design, np.eye(10)[digits.target], rcond=None)
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


@pytest.fixture
def digits(
    cli_registry: ModelRegistry, digits_weights: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
) -> None:
    weights, bias = digits_weights
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["pixels"], name="flatten", axis=1),
            helper.make_node("Gemm", ["pixels", "weights", "bias"], ["output"], name="linear"),
        ],
        "digits_linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    content = model.SerializeToString()
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    draft = ManifestDraft(
        task="classification",
        description="Least-squares linear digits classifier.",
        signature=signature_of(session),
        labels=[str(digit) for digit in range(10)],
    )
    cli_registry.publish(DIGITS, {MODEL_FILE: content}, draft)


def request_file(rows: npt.NDArray[np.float32], name: str = "request.json", **parameters: Any) -> str:
    path = Path(name)
    path.write_text(
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": list(rows.shape),
                        "data": rows.ravel().tolist(),
                    }
                ],
                "parameters": parameters,
            }
        )
    )
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["explain", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def table_rows(block: str) -> list[list[str]]:
    """The feature lines of one row's table, split into cells (the bar is absent for a zero attribution)."""
    lines = block.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:2] in (["FEATURE", "VALUE"], ["TOKEN", "POSITION"])
    )
    return [
        line.split() for line in lines[header + 1 :] if line.startswith("  ") and not line.startswith("  (")
    ]


def service_explain(
    service: InferenceService, ref: str, rows: npt.NDArray[np.float32], **parameters: Any
) -> Any:
    request = InferenceRequest(inputs=[Tensor("input", "FP32", rows)], parameters=parameters)
    return service.explain(parse_ref(ref), request, decode_explain_parameters(parameters))


def test_the_table_lists_features_by_attribution_as_the_service_computes_them(
    seed: None, service: InferenceService, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, SEED, "--input", request_file(ROWS), "--target", "2")

    heading, *blocks = out.strip().split("\n\n")
    assert heading == "seed-mlp v1: ablation, baseline zeros, 22 evaluations"
    expected = service_explain(service, SEED, ROWS, target=2)
    attributions = {t.name: t.array for t in expected.outputs}["input_attribution"]
    predictions = {t.name: t.array for t in expected.outputs}["output"]
    assert len(blocks) == 2
    for row, block in enumerate(blocks):
        assert block.startswith(f"row {row}: target output[2] = {predictions[row, 2]:.4g}\n")
        order = sorted(range(10), key=lambda i: -abs(attributions[row, i]))
        cells = table_rows(block)
        assert [c[0] for c in cells] == [f"input[{i}]" for i in order]
        assert [float(c[1]) for c in cells] == pytest.approx(ROWS[row, order], rel=1e-3)
        assert [float(c[2]) for c in cells] == pytest.approx(attributions[row, order], rel=1e-3, abs=1e-6)
        bars = [c[3] if len(c) > 3 else "" for c in cells]
        assert len(bars[0]) == 20 and [len(b) for b in bars] == sorted((len(b) for b in bars), reverse=True)
        signs = ["+" if attributions[row, i] > 0 else "-" for i in order]
        assert all(set(bar) <= {sign} for bar, sign in zip(bars, signs, strict=True))
    assert not Path("explanation.png").exists()  # tabular input: no heatmap

    shortened = run(
        capsys, f"{SEED}/versions/1", "--input", request_file(ROWS[:1]), "--target", "2", "--top", "3"
    )
    assert len(table_rows(shortened)) == 3
    assert "(3 of 10 features; --top N shows more)" in shortened


def test_json_prints_the_v2_response_with_options_over_the_file_s_parameters(
    seed: None, service: InferenceService, capsys: pytest.CaptureFixture[str]
) -> None:
    path = request_file(ROWS, method="ablation", baseline="mean", target=0)
    out = run(
        capsys,
        SEED,
        "--input",
        path,
        "--method",
        "shapley",
        "--n-samples",
        "4",
        "--seed",
        "1",
        "--target",
        "2",
        "--json",
    )

    answer = json.loads(out)
    settings = answer["parameters"]["explanation"]
    assert (settings["method"], settings["n_samples"], settings["seed"]) == ("shapley", 4, 1)
    assert (settings["baseline"], settings["target"]) == ("mean", [2, 2])  # the file's baseline stays
    got = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
    assert list(got) == ["output", "input_attribution"]
    expected = service_explain(
        service, SEED, ROWS, method="shapley", baseline="mean", target=2, n_samples=4, seed=1
    )
    np.testing.assert_allclose(got["input_attribution"], expected.outputs[1].array, rtol=1e-6)
    assert not Path("explanation.png").exists()


def test_an_image_model_gets_a_heatmap_png_per_row_and_its_table_names_pixels(
    digits: None,
    digits_weights: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from matplotlib.image import imread

    images = load_digits().images[[0, 3]].astype(np.float32)[:, None]  # a 0 and a 3, [2, 1, 8, 8]
    out = run(capsys, DIGITS, "--input", request_file(images[:1]), "--target", "0")

    assert "row 0: target '0' (index 0, score" in out and "predicted '0'" in out
    assert out.strip().endswith("heatmap: explanation.png")
    weights, _ = digits_weights
    known = weights[:, 0] * images[0].reshape(-1)  # linear: ablating pixel p loses W[p, 0] * x[p]
    top = np.argsort(-np.abs(known), kind="stable")[:15]
    cells = table_rows(out)
    assert [c[0] for c in cells] == [f"input[0,{p // 8},{p % 8}]" for p in top]
    assert [float(c[2]) for c in cells] == pytest.approx(known[top], rel=1e-3, abs=1e-5)

    first = Path("explanation.png").read_bytes()
    assert first.startswith(PNG_SIGNATURE)
    picture = imread("explanation.png")
    assert picture.ndim == 3 and picture.shape[1] > 1.5 * picture.shape[0]  # two panels side by side

    out = run(
        capsys,
        DIGITS,
        "--input",
        request_file(images),
        "--png",
        "heat.png",
        "--method",
        "occlusion",
        "--window",
        "2",
    )
    assert "occlusion (window [1, 2, 2], stride [1, 1, 1])" in out
    assert "heatmap: heat-0.png" in out and "heatmap: heat-1.png" in out
    assert all(imread(f"heat-{row}.png").shape == picture.shape for row in (0, 1))
    run(capsys, DIGITS, "--input", request_file(images[:1]), "--target", "0")
    assert Path("explanation.png").read_bytes() == first  # deterministic bytes


def test_a_text_model_s_table_lists_its_tokens_by_attribution(
    cli_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.models import WORDPIECE_VOCAB, bag_of_words_model

    weights = np.random.default_rng(5).normal(size=(len(WORDPIECE_VOCAB), 2)).astype(np.float32)
    cli_registry.publish("bag-of-words", *bag_of_words_model(weights))
    words = ["the", "cat", "sat", "on", "the", "mat"]
    Path("text.json").write_text(
        json.dumps(
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [" ".join(words)]}]}
        )
    )

    out = run(capsys, "bag-of-words", "--input", "text.json", "--target", "positive")

    assert out.startswith("bag-of-words v1: ablation, baseline mask, 7 evaluations\n")
    assert "row 0: target 'positive' (index 1, score" in out
    # The graph sums token weights: masking a token loses its weight and gains [MASK]'s.
    vocab = {token: index for index, token in enumerate(WORDPIECE_VOCAB)}
    known = [weights[vocab[word], 1] - weights[vocab["[MASK]"], 1] for word in words]
    order = sorted(range(len(words)), key=lambda i: -abs(known[i]))
    cells = table_rows(out)
    assert [(c[0], int(c[1])) for c in cells] == [(words[i], i) for i in order]
    assert [float(c[2]) for c in cells] == pytest.approx([known[i] for i in order], rel=1e-3, abs=1e-5)

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(Path("text.json").read_bytes())))
    assert run(capsys, "bag-of-words", "--input", "-", "--target", "positive") == out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--method", "lime"], "argument --method: invalid choice: 'lime'"),
        (
            ["--baseline", "ones"],
            "argument --baseline: expected one of zeros, mean, mask, pad or a finite number",
        ),
        (["--window", "2x2"], "argument --window: expected a size or comma-separated sizes"),
        (["--n-samples", "0"], "argument --n-samples: expected an integer >= 1, got '0'"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain", SEED, "--input", "request.json", *argv])

    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_bad_requests_exit_1_with_one_line_naming_the_parameter(
    seed: None, digits: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = request_file(ROWS)
    image = request_file(np.zeros((1, 1, 8, 8), dtype=np.float32), "image.json")
    assert "parameters.target: expected an output index in [0, 9]" in fail(
        capsys, "explain", SEED, "--input", path, "--target", "12"
    )
    assert "got an unknown label" in fail(capsys, "explain", DIGITS, "--input", image, "--target", "seven")
    assert "parameters.window: required for occlusion" in fail(
        capsys, "explain", SEED, "--input", path, "--target", "2", "--method", "occlusion"
    )
    assert "parameters.window: used by occlusion only" in fail(
        capsys, "explain", SEED, "--input", path, "--target", "2", "--window", "2"
    )
    assert "--input: expected a JSON file holding a V2 request body, got 'absent.json'" in fail(
        capsys, "explain", SEED, "--input", "absent.json"
    )
    Path("broken.json").write_text('{"inputs": [')
    assert fail(capsys, "explain", SEED, "--input", "broken.json").startswith("error: --input broken.json: ")
    assert "model 'absent': not found" in fail(capsys, "explain", "absent", "--input", path)


def test_the_cli_choices_are_the_explain_parameters_choices() -> None:
    assert get_args(Method) == METHODS
    assert get_args(NamedBaseline) == NAMED_BASELINES
