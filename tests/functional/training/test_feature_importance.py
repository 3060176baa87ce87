"""Permutation feature importance and training means: measured through onnxruntime when publishing.

A linear map has a known answer: shuffling feature j of y = x W adds (x'_j - x_j) W_j to every output, so
the mse rises by 2 var(x_j) |W_j|^2 / n_outputs on average. Both the hand-built graph and the trained
seed-mlp (whose data is such a map) are held to it.
"""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import onnxruntime as ort
import pytest
from matplotlib.image import imread
from onnx import TensorProto, helper, numpy_helper

from maas.registry import FeatureImportance, GlobalImportance, Lineage, Manifest, ModelRegistry
from maas.signature import Signature, TensorSpec
from maas.training import TrainedModel, open_session
from maas.training.card import CARD_FILE, IMPORTANCE_PLOT, render_report
from maas.training.export import INPUT_NAME
from maas.training.importance import (
    DEFAULT_REPEATS,
    Score,
    direct_metric,
    measure_feature_importance,
    permutation_importance,
)
from maas.training.metric_goals import MetricGoal
from maas.training.metrics import Task, evaluate
from maas.training.recipe import apply_overrides
from maas.training.report import ModelReport
from maas.training.seed_mlp import N_FEATURES, SeedMlpConfig, make_dataset
from tests.support.models import IR_VERSION, OPSET, TINY_SEED_OVERRIDES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The trained seed-mlp's importances against the linear map's expected ones: 3 epochs leave a few percent
# of the fit unlearned, and 300 test rows shuffled 5 times leave a few percent of sampling noise.
TRAINED_RATIO_TOLERANCE = 0.15


def _linear_session(weights: np.ndarray) -> ort.InferenceSession:
    """y = x @ weights as a real ONNX graph: importances with an exact expected value, no training."""
    n_in, n_out = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", [INPUT_NAME, "weights"], ["output"])],
        "linear",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return open_session({"model.onnx": model.SerializeToString()})


def _expected_mse_rise(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """E[mse after shuffling feature j] - mse before, for a model that is exactly x @ weights."""
    # Over random permutations, a row's shuffled value differs from its own by twice the column's
    # (population) variance in mean square; each output then moves by that times its weight squared.
    variance = x.astype(np.float64).var(axis=0)
    return np.asarray(2 * variance * np.sum(weights.astype(np.float64) ** 2, axis=1) / weights.shape[1])


def _mse_score(targets: np.ndarray) -> Score:
    score = direct_metric("regression", "mse", targets)
    assert score is not None
    return score


def _by_feature(importance: GlobalImportance) -> dict[str, FeatureImportance]:
    return {item.feature: item for item in importance.features}


def _seed_config() -> SeedMlpConfig:
    """The config the session's `seed_model` was trained with, built as train_recipe builds it."""
    return apply_overrides(SeedMlpConfig(), TINY_SEED_OVERRIDES)


def _true_weights() -> np.ndarray:
    """The seed's W, recovered by least squares from the training split (noise 0.05 over 1400 rows)."""
    splits = make_dataset(_seed_config())
    (x_train,) = splits.train.inputs
    with_bias = np.hstack([x_train, np.ones((len(x_train), 1), np.float32)])
    solution, *_ = np.linalg.lstsq(with_bias.astype(np.float64), splits.train.targets.astype(np.float64))
    return np.asarray(solution[:N_FEATURES])


# --- the measurement, on a hand-built linear graph ---------------------------------------------------


def test_a_linear_graph_scores_each_feature_by_its_weights_and_an_unused_one_at_zero() -> None:
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(4, 3)).astype(np.float32)
    weights[2] = 0.0  # the graph never reads feature 2
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    session = _linear_session(weights)
    targets = x @ weights

    importance = permutation_importance(
        session, {INPUT_NAME: x}, _mse_score(targets), metric="mse", goal="minimize"
    )

    found = _by_feature(importance)
    expected = _expected_mse_rise(x, weights)
    assert [found[f"input[{j}]"].importance for j in (0, 1, 3)] == pytest.approx(
        expected[[0, 1, 3]], rel=0.05
    )
    # x_2 * 0 adds an exact 0 wherever it is shuffled to: the output does not move at all.
    assert (found["input[2]"].importance, found["input[2]"].std) == (0.0, 0.0)
    assert importance.features[-1].feature == "input[2]"
    assert importance.baseline_value == pytest.approx(0.0, abs=1e-10)
    assert (importance.samples, importance.repeats, importance.seed) == (1000, DEFAULT_REPEATS, 0)


def test_importance_is_sorted_and_oriented_so_positive_means_relied_on_for_either_goal() -> None:
    rng = np.random.default_rng(3)
    weights = np.array([[3.0, 0.0], [0.0, 0.3]], dtype=np.float32)  # feature 0 decides the class
    x = rng.normal(size=(400, 2)).astype(np.float32)
    session = _linear_session(weights)
    labels = np.argmax(x @ weights, axis=1)
    accuracy = direct_metric("classification", "accuracy", labels)
    assert accuracy is not None

    importance = permutation_importance(
        session, {INPUT_NAME: x}, accuracy, metric="accuracy", goal="maximize"
    )

    assert importance.baseline_value == 1.0
    assert [item.feature for item in importance.features] == ["input[0]", "input[1]"]
    assert importance.features[0].importance > 0.2
    assert importance.features[0].importance > importance.features[1].importance >= 0.0


def test_a_column_holding_one_value_is_zero_and_the_same_seed_repeats_exactly(
    seed_model: TrainedModel,
) -> None:
    session = open_session(seed_model.files)
    x = seed_model.test_inputs[INPUT_NAME].copy()
    x[:, 5] = 0.25
    targets = seed_model.fit.test_targets
    assert targets is not None

    def measure(seed: int) -> GlobalImportance:
        return permutation_importance(
            session, {INPUT_NAME: x}, _mse_score(targets), metric="mse", goal="minimize", seed=seed
        )

    first = measure(0)

    assert (_by_feature(first)["input[5]"].importance, _by_feature(first)["input[5]"].std) == (0.0, 0.0)
    assert measure(0) == first
    assert measure(1) != first


# --- the metric is the one evaluate reports ----------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "metric", "shape", "classes"),
    [
        ("regression", "mse", (50, 10), None),
        ("regression", "mae", (50, 10), None),
        ("regression", "mse", (50,), None),
        ("classification", "accuracy", (60, 4), 4),
    ],
)
def test_direct_metrics_equal_what_evaluate_reports(
    task: Task, metric: str, shape: tuple[int, ...], classes: int | None
) -> None:
    rng = np.random.default_rng(11)
    served = rng.normal(size=shape).astype(np.float32)
    targets: np.ndarray
    if classes is None:
        targets = rng.normal(size=shape).astype(np.float32)
        labels = None
    else:
        targets = rng.integers(0, classes, size=shape[0])
        labels = [str(i) for i in range(classes)]
    score = direct_metric(task, metric, targets)

    assert score is not None
    assert score(served) == pytest.approx(evaluate(task, served, targets=targets, labels=labels)[0][metric])


@pytest.mark.parametrize(
    ("change", "task", "metric"),
    [
        ("token ids", "classification", "accuracy"),
        ("embedding", "embedding", "cosine_min"),
        ("no targets", "regression", "mse"),
        ("no task", None, "mse"),
        ("no metric", "regression", None),
    ],
)
def test_models_without_float_inputs_targets_or_a_metric_get_no_importance(
    seed_model: TrainedModel, change: str, task: str | None, metric: str | None
) -> None:
    fitted = seed_model.fit
    if change == "token ids":
        fitted = dataclasses.replace(fitted, test_inputs={"input_ids": np.zeros((4, 8), dtype=np.int64)})
    if change == "no targets":
        fitted = dataclasses.replace(fitted, test_targets=None)
    goal: MetricGoal = "maximize" if metric in ("accuracy", "cosine_min") else "minimize"
    session = open_session(seed_model.files)

    assert measure_feature_importance(session, fitted, task=task, metric=metric, goal=goal) is None


# --- seed-mlp end to end: the pipeline, the manifest and the card ------------------------------------


def test_seed_mlp_importance_follows_the_true_weights(seed_model: TrainedModel) -> None:
    importance = seed_model.draft.feature_importance
    assert importance is not None

    assert (importance.method, importance.metric, importance.goal) == ("permutation", "mse", "minimize")
    assert importance.baseline_value == seed_model.draft.metrics["mse"]
    assert importance.samples == seed_model.draft.params["n_test"]
    assert sorted(item.feature for item in importance.features) == sorted(
        f"input[{j}]" for j in range(N_FEATURES)
    )
    values = [item.importance for item in importance.features]
    assert values == sorted(values, reverse=True)
    weights = _true_weights()
    expected = _expected_mse_rise(seed_model.test_inputs[INPUT_NAME], weights)
    found = _by_feature(importance)
    ratios = [found[f"input[{j}]"].importance / expected[j] for j in range(N_FEATURES)]
    assert ratios == pytest.approx([1.0] * N_FEATURES, abs=TRAINED_RATIO_TOLERANCE)
    # The three heaviest rows of W are well apart from the rest, so their order is not noise.
    heaviest = [f"input[{j}]" for j in np.argsort(-np.sum(weights**2, axis=1))[:3]]
    assert [item.feature for item in importance.features[:3]] == heaviest


def test_published_seed_manifest_has_importance_training_means_and_the_plot(
    published_seed: Manifest, registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    manifest = registry.manifest(published_seed.name, published_seed.version)
    (train,) = make_dataset(_seed_config()).train.inputs

    assert manifest.feature_importance == seed_model.draft.feature_importance
    assert manifest.feature_importance is not None and len(manifest.feature_importance.features) == 10
    assert list(manifest.input_means) == [INPUT_NAME]
    assert manifest.input_means[INPUT_NAME] == pytest.approx(train.astype(np.float64).mean(axis=0).tolist())
    assert IMPORTANCE_PLOT in manifest.report_files
    png = registry.read_artifact(manifest, manifest.artifact(IMPORTANCE_PLOT))
    assert png.startswith(PNG_SIGNATURE)
    assert imread(io.BytesIO(png), format="png").ndim == 3
    card = registry.read_artifact(manifest, manifest.artifact(CARD_FILE)).decode()
    section = card.split("## Feature importance\n", 1)[1].split("\n## ", 1)[0]
    top = manifest.feature_importance.features[0]
    assert "Permutation importance on the held-out test set (300 samples)" in section
    assert "shuffled across the test rows 5 times" in section and "mse" in section
    assert "All 10 features." in section
    assert f"| `{top.feature}` | {top.importance:.4g} ± {top.std:.4g} |" in section
    assert f"![feature_importance]({IMPORTANCE_PLOT})" in card


# --- the card ----------------------------------------------------------------------------------------


def _report(importance: GlobalImportance | None) -> ModelReport:
    return ModelReport(
        name="pixels",
        task="classification",
        description="",
        intended_use="",
        data_description="",
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 1, 2, 10])],
            outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1, 3])],
        ),
        preprocessing=None,
        metrics={"accuracy": 0.9},
        evaluation={},
        params={},
        primary_metric="accuracy",
        primary_metric_goal="maximize",
        history=None,
        search=None,
        quantization=None,
        parity=None,
        lineage=Lineage(),
        feature_importance=importance,
    )


def test_the_card_lists_the_top_15_features_and_plots_them_reproducibly() -> None:
    features = [
        FeatureImportance(feature=f"input[0,{i // 10},{i % 10}]", importance=0.2 - 0.01 * i, std=0.001 * i)
        for i in range(20)
    ]
    importance = GlobalImportance(
        metric="accuracy",
        goal="maximize",
        baseline_value=0.9,
        repeats=5,
        seed=0,
        samples=270,
        features=features,
    )

    files = render_report(_report(importance))

    assert set(files) == {CARD_FILE, IMPORTANCE_PLOT}
    assert files[IMPORTANCE_PLOT].startswith(PNG_SIGNATURE)
    assert render_report(_report(importance)) == files
    card = files[CARD_FILE].decode()
    section = card.split("## Feature importance\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(input\[[0-9,]+\])` \| (.+) \|$", section, flags=re.MULTILINE)
    assert [name for name, _ in rows] == [item.feature for item in features[:15]]
    assert rows[2] == ("input[0,0,2]", "0.18 ± 0.002")
    assert "The top 15 of 20 features." in section
    assert "accuracy (higher is better; 0.9 unshuffled)" in section


def test_without_importance_the_card_has_no_section_and_no_plot() -> None:
    files = render_report(_report(None))

    assert set(files) == {CARD_FILE}
    assert "Feature importance" not in files[CARD_FILE].decode()
