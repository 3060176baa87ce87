"""The model card and plots: what a reader of a published version sees, rendered by real matplotlib."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import pytest
from matplotlib.image import imread

from maas.registry import Lineage, Normalization, Parity, Preprocessing, Quantization
from maas.registry.manifest import SAFE_RELATIVE_PATH
from maas.signature import Signature, TensorSpec
from maas.training.card import CARD_FILE, CONFUSION_PLOT, LOSS_PLOT, METRIC_PLOT, render_report
from maas.training.history import EpochRecord, History, SearchSummary, TrialSummary
from maas.training.report import ModelReport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGITS = [str(d) for d in range(10)]
LINEAGE = Lineage(
    recipe="digits-mlp",
    dataset_hash="ab" * 32,
    code_version="0.1.0+abc1234",
    packages={"torch": "2.13.0", "onnxruntime": "1.20.1"},
    seed=7,
)


def _confusion_matrix() -> list[list[int]]:
    matrix = np.diag(np.arange(30, 40))
    matrix[3, 5], matrix[8, 1], matrix[9, 4] = 2, 3, 1
    return [[int(n) for n in row] for row in matrix]


def _history() -> History:
    epochs = [
        EpochRecord(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e + 0.02 * e, val_metric=accuracy, lr=1e-3)
        for e, accuracy in enumerate([0.83, 0.86, 0.89, 0.92, 0.91], start=1)
    ]
    return History(
        metric_name="accuracy", metric_goal="maximize", epochs=epochs, best_epoch=4, stopped_early=True
    )


def _search() -> SearchSummary:
    trials = [
        TrialSummary(
            number=0, params={"lr": 0.01, "hidden": 32}, value=0.912, state="COMPLETE", epochs_run=5
        ),
        TrialSummary(
            number=1, params={"lr": 0.001, "hidden": 64}, value=0.947, state="COMPLETE", epochs_run=5
        ),
        TrialSummary(number=2, params={"lr": 0.1, "hidden": 16}, value=None, state="PRUNED", epochs_run=2),
    ]
    return SearchSummary(
        sampler="tpe", metric_name="accuracy", metric_goal="maximize", trials=trials, best_trial=1
    )


@pytest.fixture(scope="module")
def classifier() -> ModelReport:
    matrix = _confusion_matrix()
    per_class = {
        label: {
            "precision": 0.9 + i / 100,
            "recall": 0.8 + i / 100,
            "f1": 0.85 + i / 100,
            "support": sum(matrix[i]),
        }
        for i, label in enumerate(DIGITS)
    }
    return ModelReport(
        name="digits-mlp",
        task="classification",
        description="An MLP over 8x8 handwritten digit images.",
        intended_use="Teaching and demos of the serving platform.",
        data_description="scikit-learn's digits: 1797 grayscale 8x8 images of the digits 0-9.",
        signature=Signature(
            inputs=[TensorSpec(name="pixels", datatype="FP32", shape=[-1, 64])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
        ),
        preprocessing=Preprocessing(
            description="raw pixel intensities 0\u201316, standardized inside the graph",
            normalization=[Normalization(input="pixels", mean=[8.0] * 64, std=[4.0] * 64)],
        ),
        metrics={"accuracy": 0.9583, "macro_f1": 0.9551},
        evaluation={"labels": DIGITS, "confusion_matrix": matrix, "per_class": per_class},
        params={"lr": 0.001, "hidden": 64, "n_train": 1257, "n_val": 270, "n_test": 270},
        primary_metric="accuracy",
        primary_metric_goal="maximize",
        history=_history(),
        search=_search(),
        quantization=Quantization(
            per_channel=True,
            metric="accuracy",
            fp32_value=0.9583,
            quantized_value=0.9537,
            delta=-0.0046,
            max_degradation=0.01,
            base_version=3,
        ),
        parity=Parity(max_abs_diff=2.384e-07, tolerance=1e-4, samples=270, passed=True),
        lineage=LINEAGE,
        limitations="Trained on one writer population; other handwriting styles are untested.",
    )


@pytest.fixture
def regressor() -> ModelReport:
    return ModelReport(
        name="seed-mlp",
        task="regression",
        description="A two-layer MLP on synthetic linear data.",
        intended_use="Smoke tests of the registry and runtime.",
        data_description="y = x @ W + b + noise, drawn from the seed.",
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 4])],
            outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1, 2])],
        ),
        preprocessing=None,
        metrics={"mse": 0.0123, "mae": 0.0871, "r2": 0.98},
        evaluation={},
        params={"lr": 0.01, "hidden": 16},
        primary_metric="mse",
        primary_metric_goal="minimize",
        history=None,
        search=None,
        quantization=None,
        parity=None,
        lineage=Lineage(recipe="seed-mlp", seed=0),
    )


@pytest.fixture(scope="module")
def classifier_files(classifier: ModelReport) -> dict[str, bytes]:
    """Rendered once: rendering is pure and the plots are the slow part."""
    return render_report(classifier)


def _card(files: dict[str, bytes]) -> str:
    return files[CARD_FILE].decode("utf-8")


def _section(card: str, heading: str) -> str:
    """The text under `## heading` up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", card, flags=re.MULTILINE | re.DOTALL)
    assert match is not None, f"no section {heading!r}"
    return match.group(1)


def _table_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row in `text`, split on unescaped pipes."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([cell.strip() for cell in cells])
    return rows


def test_file_names_are_safe_relative_paths() -> None:
    for name in (CARD_FILE, LOSS_PLOT, METRIC_PLOT, CONFUSION_PLOT):
        assert re.fullmatch(SAFE_RELATIVE_PATH, name)


def test_a_classifier_gets_the_card_and_every_plot(classifier_files: dict[str, bytes]) -> None:
    files = classifier_files

    assert set(files) == {CARD_FILE, LOSS_PLOT, METRIC_PLOT, CONFUSION_PLOT}
    for name in (LOSS_PLOT, METRIC_PLOT, CONFUSION_PLOT):
        assert files[name].startswith(PNG_SIGNATURE)
        image = imread(io.BytesIO(files[name]), format="png")
        assert image.ndim == 3
        assert image.shape[0] >= 300
        assert image.shape[1] >= 400


def test_the_classifier_card_reports_metrics_per_class_scores_and_the_confusion_matrix(
    classifier_files: dict[str, bytes],
) -> None:
    card = _card(classifier_files)

    assert card.startswith("# digits-mlp\n")
    evaluation = _section(card, "Evaluation")
    assert ["accuracy (primary)", "0.9583"] in _table_rows(evaluation)
    assert ["macro_f1", "0.9551"] in _table_rows(evaluation)
    per_class = _table_rows(evaluation.split("### Per class")[1].split("### Confusion matrix")[0])
    assert [row[0] for row in per_class[1:]] == DIGITS
    assert per_class[4] == ["3", "0.93", "0.83", "0.88", "35"]
    confusion = _table_rows(evaluation.split("### Confusion matrix")[1])
    assert confusion[0] == ["true \\ predicted", *DIGITS]
    assert confusion[4] == ["3", "0", "0", "0", "**33**", "0", "2", "0", "0", "0", "0"]
    assert len(confusion) == 11


def test_the_card_covers_use_data_signature_training_and_lineage(classifier_files: dict[str, bytes]) -> None:
    card = _card(classifier_files)

    assert "Teaching and demos" in _section(card, "Intended use")
    assert "### Out-of-scope use" in _section(card, "Intended use")
    data = _section(card, "Data")
    assert ["train", "1257"] in _table_rows(data)
    assert ["test", "270"] in _table_rows(data)
    assert "ab" * 32 in data
    signature = _section(card, "Inputs and outputs")
    assert ["input", "`pixels`", "FP32", "[-1, 64]"] in _table_rows(signature)
    assert ["output", "`logits`", "FP32", "[-1, 10]"] in _table_rows(signature)
    assert "raw pixel intensities 0\u201316, standardized inside the graph" in signature
    training = _section(card, "Training")
    assert ["Epochs run", "5"] in _table_rows(training)
    assert ["Best epoch", "4"] in _table_rows(training)
    assert ["Stopped early", "yes"] in _table_rows(training)
    assert ["lr", "0.001"] in _table_rows(training)
    lineage = _section(card, "Lineage")
    assert ["Code version", "`0.1.0+abc1234`"] in _table_rows(lineage)
    assert ["Seed", "7"] in _table_rows(lineage)
    assert ["torch", "2.13.0"] in _table_rows(lineage)
    assert "other handwriting styles" in _section(card, "Limitations")


def test_every_search_trial_is_listed_and_the_best_is_marked(classifier_files: dict[str, bytes]) -> None:
    card = _card(classifier_files)

    rows = _table_rows(_section(card, "Hyperparameter search"))
    trials = [row for row in rows if row[:1] and row[0][:1].isdigit()]
    assert trials == [
        ["0", "0.01", "32", "0.912", "COMPLETE", "5"],
        ["1 (best)", "0.001", "64", "0.947", "COMPLETE", "5"],
        ["2", "0.1", "16", "—", "PRUNED", "2"],
    ]
    assert ["Sampler", "tpe"] in rows


def test_quantization_and_parity_numbers_are_in_the_card(classifier_files: dict[str, bytes]) -> None:
    card = _card(classifier_files)

    quantization = _section(card, "Quantization")
    assert ["accuracy", "0.9583", "0.9537", "-0.0046"] in _table_rows(quantization)
    assert ["Per-channel", "yes"] in _table_rows(quantization)
    assert ["Allowed degradation", "0.01"] in _table_rows(quantization)
    assert "is within the allowed 0.01" in quantization
    parity = _table_rows(_section(card, "Parity"))
    assert ["Max abs diff", "2.384e-07"] in parity
    assert ["Tolerance", "0.0001"] in parity
    assert ["Samples", "270"] in parity
    assert ["Passed", "yes"] in parity


def test_the_card_links_each_plot_by_relative_name(classifier_files: dict[str, bytes]) -> None:
    plots = _section(_card(classifier_files), "Plots")

    for link in ("![loss](loss.png)", "![metric](metric.png)", "![confusion_matrix](confusion_matrix.png)"):
        assert link in plots


def test_a_plain_regressor_gets_only_the_card_without_empty_sections(regressor: ModelReport) -> None:
    files = render_report(regressor)

    assert set(files) == {CARD_FILE}
    card = _card(files)
    for absent in (
        "## Hyperparameter search",
        "## Quantization",
        "## Parity",
        "## Plots",
        "### Confusion",
        "None",
    ):
        assert absent not in card
    assert ["mse (primary)", "0.0123"] in _table_rows(_section(card, "Evaluation"))
    assert ["lr", "0.01"] in _table_rows(_section(card, "Training"))
    assert "Epochs run" not in card
    assert "## Limitations" in card


def test_rendering_is_deterministic(classifier: ModelReport, classifier_files: dict[str, bytes]) -> None:
    again = render_report(classifier)

    assert again[CARD_FILE] == classifier_files[CARD_FILE]
    # Same matplotlib, same data: no timestamp or version in the PNGs, so the bytes repeat too.
    assert again == classifier_files


def test_pipes_and_newlines_in_values_stay_inside_their_cell(regressor: ModelReport) -> None:
    report = dataclasses.replace(
        regressor, params={"activation": "relu|gelu", "note": "two\nlines", "lr": 0.01}
    )

    rows = _table_rows(_section(_card(render_report(report)), "Training"))

    assert ["activation", "relu\\|gelu"] in rows
    assert ["note", "two<br>lines"] in rows
    assert all(len(row) == 2 for row in rows)


def test_long_class_names_become_indexed_columns(regressor: ModelReport) -> None:
    evaluation = {
        "labels": ["setosa", "versicolor", "virginica"],
        "confusion_matrix": [[9, 1, 0], [0, 8, 2], [0, 0, 10]],
    }
    report = dataclasses.replace(regressor, task="classification", evaluation=evaluation)

    files = render_report(report)

    assert set(files) == {CARD_FILE, CONFUSION_PLOT}
    confusion = _table_rows(_card(files).split("### Confusion matrix")[1].split("\n## ")[0])
    assert confusion[0] == ["true \\ predicted", "0", "1", "2"]
    assert confusion[2] == ["1: versicolor", "0", "**8**", "2"]


def test_a_confusion_matrix_that_does_not_match_its_labels_is_refused(classifier: ModelReport) -> None:
    evaluation = {**classifier.evaluation, "labels": DIGITS[:3]}

    with pytest.raises(ValueError, match=r"expected 3x3"):
        render_report(dataclasses.replace(classifier, evaluation=evaluation))
