"""The digits-resnet recipe: seeded stratified splits, in-graph standardization, ONNX parity and quality."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from maas.errors import InvalidInput
from maas.registry import Manifest, ModelRegistry
from maas.training import publish_trained, train_recipe
from maas.training.digits_resnet import (
    DIGITS_RESNET,
    LABELS,
    N_CLASSES,
    DigitsResnetConfig,
    fit_digits_resnet,
    make_dataset,
)
from maas.training.export import INPUT_NAME, GraphSpec, export_onnx, measure_parity
from maas.training.lineage import dataset_hash
from maas.training.onnx_checks import open_session
from maas.training.recipe import DEFAULT_PARITY_TOLERANCE, FitResult

N_DIGITS = 1797
# Two epochs of the smallest network: enough to exercise every step, far too little to be accurate.
TINY = DigitsResnetConfig(epochs=2, width=8, depth=1, progress=False)


@pytest.fixture(scope="module")
def tiny_fit() -> FitResult:
    return fit_digits_resnet(TINY)


def _rows(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """Each sample as one sortable byte string (pixels and label), to compare splits as multisets."""
    flat = np.concatenate([images.reshape(len(images), -1).astype(np.float32), labels[:, None]], axis=1)
    return sorted(row.tobytes() for row in flat.astype(np.float32))


def _test_accuracy(result: FitResult) -> float:
    with torch.inference_mode():
        logits = result.module(torch.from_numpy(result.test_inputs[INPUT_NAME])).numpy()
    return float(np.mean(np.argmax(logits, axis=1) == result.test_targets))


def test_same_seed_gives_the_same_split_history_and_weights(tiny_fit: FitResult) -> None:
    threads = torch.get_num_threads()
    again = fit_digits_resnet(TINY)

    assert torch.get_num_threads() == threads  # training pins one thread, then gives the count back
    assert again.dataset_hash == tiny_fit.dataset_hash
    assert again.history == tiny_fit.history
    first, second = tiny_fit.module.state_dict(), again.module.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_another_seed_gives_another_split() -> None:
    other = dataclasses.replace(TINY, seed=1)

    assert dataset_hash(make_dataset(TINY).arrays()) != dataset_hash(make_dataset(other).arrays())


def test_splits_are_disjoint_stratified_and_cover_every_sample() -> None:
    splits = make_dataset(TINY)
    digits = load_digits()
    labels = [splits.train.targets, splits.val.targets, splits.test.targets]

    assert [len(y) for y in labels] == [1257, 270, 270]
    (x_test,) = splits.test.inputs
    assert x_test.shape == (270, 1, 8, 8)
    assert x_test.dtype == np.float32
    assert splits.test.targets.dtype == np.int64
    # Every sample lands in exactly one split: the splits together are the full set as a multiset.
    images = np.concatenate([*splits.train.inputs, *splits.val.inputs, x_test])
    together = _rows(images, np.concatenate(labels))
    assert together == _rows(digits.images, digits.target)
    full_share = np.bincount(digits.target, minlength=N_CLASSES) / N_DIGITS
    for y in labels:
        expected = full_share * len(y)
        assert np.all(np.abs(np.bincount(y, minlength=N_CLASSES) - expected) <= 2)


def test_normalization_is_fitted_on_the_train_split_only(tiny_fit: FitResult) -> None:
    splits = make_dataset(TINY)
    train = splits.train.inputs[0].astype(np.float64)
    everything = load_digits().images.astype(np.float64)

    preprocessing = tiny_fit.details.preprocessing
    assert preprocessing is not None
    (normalization,) = preprocessing.normalization
    assert normalization.input == INPUT_NAME
    assert normalization.mean == pytest.approx([train.mean()])
    assert normalization.std == pytest.approx([train.std()])
    assert normalization.mean != pytest.approx([everything.mean()], abs=1e-6)
    buffers = dict(tiny_fit.module.named_buffers())
    assert float(buffers["standardize.mean"]) == pytest.approx(train.mean())
    assert float(buffers["standardize.std"]) == pytest.approx(train.std())


def test_exported_graph_takes_raw_pixels_and_matches_torch(tiny_fit: FitResult) -> None:
    raw = tiny_fit.test_inputs[INPUT_NAME]
    assert raw.max() > 1.0  # the test set really is raw 0..16 intensities, not standardized ones

    files = export_onnx(tiny_fit.module, {INPUT_NAME: raw[:4]}, GraphSpec())
    session = open_session(files)
    parity = measure_parity(tiny_fit.module, session, raw, tolerance=DEFAULT_PARITY_TOLERANCE)

    assert parity.passed, parity
    assert parity.samples == len(raw)
    (logits,) = session.run(None, {INPUT_NAME: raw[:7]})
    assert logits.shape == (7, N_CLASSES)


def test_fit_result_describes_a_classifier(tiny_fit: FitResult) -> None:
    assert tiny_fit.details.labels == LABELS == [str(digit) for digit in range(10)]
    assert tiny_fit.graph == GraphSpec()
    assert tiny_fit.history is not None
    assert tiny_fit.history.metric_name == "accuracy"
    assert tiny_fit.params["n_classes"] == N_CLASSES
    assert tiny_fit.params["epochs_run"] == TINY.epochs
    assert (tiny_fit.params["n_train"], tiny_fit.params["n_val"], tiny_fit.params["n_test"]) == (
        1257,
        270,
        270,
    )
    assert "progress" not in tiny_fit.params
    assert DIGITS_RESNET.task == "classification"
    assert (DIGITS_RESNET.primary_metric, DIGITS_RESNET.primary_metric_goal) == ("accuracy", "maximize")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"val_fraction": 0.0}, "val_fraction: expected a number in"),
        ({"test_fraction": 0.5}, "test_fraction: expected a number in"),
        ({"dropout": 1.0}, "dropout: expected a number in"),
    ],
)
def test_bad_configs_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        DigitsResnetConfig(**overrides)


def test_default_config_reaches_97_percent_through_onnxruntime_and_the_manifest_says_so(
    registry: ModelRegistry,
) -> None:
    trained = train_recipe("digits-resnet", {"progress": False})
    manifest = publish_trained(trained, registry)

    # The manifest's accuracy is the exported graph's, measured by onnxruntime on the test split.
    assert manifest.metrics["accuracy"] >= 0.97
    assert manifest.metrics["accuracy"] == pytest.approx(_test_accuracy(trained.fit), abs=1 / 270)
    assert manifest.primary_metric == "accuracy" and manifest.primary_metric_goal == "maximize"
    assert set(manifest.evaluation["per_class"]) == {str(digit) for digit in range(10)}
    confusion = manifest.evaluation["confusion_matrix"]
    assert len(confusion) == 10 and sum(map(sum, confusion)) == manifest.params["n_test"]
    assert manifest.preprocessing is not None and manifest.preprocessing.normalization[0].input == "input"
    assert {"card.md", "loss.png", "metric.png", "confusion_matrix.png", "feature_importance.png"} <= set(
        manifest.report_files
    )
    _assert_importance_covers_every_pixel_and_means_are_the_average_digit(manifest, registry)


def _assert_importance_covers_every_pixel_and_means_are_the_average_digit(
    manifest: Manifest, registry: ModelRegistry
) -> None:
    """Checked on the default model above rather than in a test of its own, which would train it again."""
    importance = manifest.feature_importance
    splits = make_dataset(DigitsResnetConfig())
    assert importance is not None

    assert (importance.metric, importance.goal) == ("accuracy", "maximize")
    assert importance.baseline_value == manifest.metrics["accuracy"]
    names = [item.feature for item in importance.features]
    assert sorted(names) == sorted(f"input[0,{row},{column}]" for row in range(8) for column in range(8))
    # A pixel that is the same in every test image cannot be shuffled into anything else.
    (x_test,) = splits.test.inputs
    constant = np.all(x_test == x_test[:1], axis=0).reshape(-1)
    assert constant.any()  # the corners are blank in every image
    found = {item.feature: item for item in importance.features}
    for index in np.flatnonzero(constant):
        assert found[f"input[0,{index // 8},{index % 8}]"].importance == 0.0
    # The digit strokes matter: the top pixel costs at least two test images when shuffled.
    assert importance.features[0].importance >= 2 / 270
    train_means = splits.train.inputs[0].mean(axis=0).reshape(-1).tolist()
    assert manifest.input_means[INPUT_NAME] == pytest.approx(train_means)
    png = registry.read_artifact(manifest, manifest.artifact("feature_importance.png"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
