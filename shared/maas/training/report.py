"""The model card and plots every published version carries, rendered from plain data to bytes.

Pure: no I/O and no clock, so the same report always renders the same card, and the publisher decides
where the files go. matplotlib is imported only when a plot is drawn, so importing this module is cheap.
"""

from __future__ import annotations

import io
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from maas.registry import GlobalImportance, Lineage, Parity, Preprocessing, Quantization
from maas.signature import Signature
from maas.training.history import History, SearchSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CARD_FILE",
    "CONFUSION_PLOT",
    "IMPORTANCE_PLOT",
    "LOSS_PLOT",
    "METRIC_PLOT",
    "ModelReport",
    "render_report",
]

CARD_FILE = "card.md"
LOSS_PLOT = "loss.png"
METRIC_PLOT = "metric.png"
CONFUSION_PLOT = "confusion_matrix.png"
IMPORTANCE_PLOT = "feature_importance.png"

# Recipes record their split sizes among the params under these names.
SPLIT_PARAMS = (("train", "n_train"), ("validation", "n_val"), ("test", "n_test"))
PLOT_SIZE_IN = (5.0, 3.5)
PLOT_DPI = 100
# matplotlib otherwise stamps its version into the PNG; the bytes should depend on the data only.
PNG_METADATA: dict[str, str | None] = {"Software": None}
# Longer labels make a confusion table too wide to read, so its columns switch to class indices.
MAX_HEADER_LABEL_CHARS = 6
MAX_TICK_LABEL_CHARS = 12
MAX_ANNOTATED_CLASSES = 30
# Characters of tick labels (longest label times classes) that fit upright under a confusion plot.
SLANT_TICK_CHARS = 24
# A loss that falls by more than this factor is unreadable on a linear axis.
LOG_SCALE_RATIO = 50.0
# Features in the card's importance table and plot: the rest of a 64-pixel image is a long tail of zeros.
TOP_FEATURES = 15
MISSING = "—"
FACT_HEADER = ("Property", "Value")


@dataclass(frozen=True)
class ModelReport:
    """Everything the card says about one trained model, gathered by the pipeline before publishing."""

    name: str
    task: str
    description: str
    intended_use: str
    data_description: str
    # The serving signature: what clients send, so text for a tokenized model.
    signature: Signature
    preprocessing: Preprocessing | None
    # Measured through onnxruntime on the held-out test set.
    metrics: dict[str, float]
    # Classifiers: {"labels": [...], "confusion_matrix": [[int]], "per_class": {label: {...}}}; may be {}.
    evaluation: dict[str, Any]
    params: dict[str, Any]
    primary_metric: str | None
    primary_metric_goal: Literal["minimize", "maximize"]
    history: History | None
    search: SearchSummary | None
    quantization: Quantization | None
    parity: Parity | None
    lineage: Lineage
    limitations: str = ""
    # Permutation importance on the test set, most important first; None where it was not measured.
    feature_importance: GlobalImportance | None = None


def render_report(report: ModelReport) -> dict[str, bytes]:
    """card.md and the PNG plots that apply to this report, keyed by file name.

    Raises ValueError when `evaluation` holds a confusion matrix that does not match its labels.
    """
    confusion = _confusion(report.evaluation)
    plots: dict[str, bytes] = {}
    history = report.history
    if history is not None and history.epochs:
        plots[LOSS_PLOT] = _loss_png(history)
        plots[METRIC_PLOT] = _metric_png(history)
    if confusion is not None:
        plots[CONFUSION_PLOT] = _confusion_png(*confusion)
    importance = report.feature_importance
    if importance is not None and importance.features:
        plots[IMPORTANCE_PLOT] = _importance_png(importance)
    card = _card(report, confusion, list(plots))
    return {CARD_FILE: card.encode("utf-8"), **plots}


# --- the card -------------------------------------------------------------------------------------


def _card(report: ModelReport, confusion: tuple[list[str], list[list[int]]] | None, plots: list[str]) -> str:
    sections = [
        _overview(report),
        _intended_use(report),
        _data(report),
        _inputs_outputs(report),
        _training(report),
        _evaluation(report, confusion),
        _feature_importance(report.feature_importance),
        _search(report.search),
        _quantization(report),
        _parity(report.parity),
        _lineage(report.lineage),
        _limitations(report.limitations),
        _plots(plots),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _overview(report: ModelReport) -> str:
    rows: list[list[str]] = [["Task", report.task]]
    if report.primary_metric is not None:
        rows.append(
            ["Primary metric", f"{report.primary_metric} ({_goal_phrase(report.primary_metric_goal)})"]
        )
        if report.primary_metric in report.metrics:
            rows.append([f"Test {report.primary_metric}", _number(report.metrics[report.primary_metric])])
    if report.lineage.recipe:
        rows.append(["Recipe", report.lineage.recipe])
    parts = [f"# {_one_line(report.name)}"]
    if report.description.strip():
        parts.append(report.description.strip())
    parts.append(_table(FACT_HEADER, rows))
    return "\n\n".join(parts)


def _intended_use(report: ModelReport) -> str:
    intended = report.intended_use.strip() or "Not stated."
    # Every model shares these; a recipe adds its own through `limitations`.
    out_of_scope = "\n".join(
        [
            "- Inputs unlike the data described below (another distribution, range, units or meaning): "
            "the model was evaluated only on held-out data from that source.",
            "- Decisions about people, safety or money without human review: the metrics below are "
            "averages over a test set and promise nothing about any single prediction.",
        ]
    )
    return f"## Intended use\n\n{intended}\n\n### Out-of-scope use\n\n{out_of_scope}"


def _data(report: ModelReport) -> str:
    parts = ["## Data", report.data_description.strip() or "Not described."]
    splits = [[split, _value(report.params[key])] for split, key in SPLIT_PARAMS if key in report.params]
    if splits:
        parts.append(_table(["Split", "Examples"], splits))
    if report.lineage.dataset_hash:
        parts.append(f"Dataset hash (sha256): {_code(report.lineage.dataset_hash)}")
    return "\n\n".join(parts)


def _inputs_outputs(report: ModelReport) -> str:
    rows = [
        [direction, _code(spec.name), spec.datatype, _shape(spec.shape)]
        for direction, specs in (("input", report.signature.inputs), ("output", report.signature.outputs))
        for spec in specs
    ]
    parts = [
        "## Inputs and outputs",
        _table(["", "Name", "Datatype", "Shape"], rows),
        "A dimension of -1 is dynamic (the batch, usually).",
    ]
    preprocessing = report.preprocessing
    if preprocessing is not None:
        parts.extend(["### Preprocessing", *_preprocessing(preprocessing)])
    return "\n\n".join(parts)


def _preprocessing(preprocessing: Preprocessing) -> list[str]:
    parts: list[str] = []
    if preprocessing.description.strip():
        parts.append(preprocessing.description.strip())
    for norm in preprocessing.normalization:
        scope = (
            "one mean and standard deviation for all its values"
            if len(norm.mean) == 1
            else f"a mean and standard deviation for each of its {len(norm.mean)} features"
        )
        parts.append(
            f"{_code(norm.input)} is standardized inside the graph with {scope}, fitted on the training "
            "split only: clients send raw values."
        )
    tokenizer = preprocessing.tokenizer
    if tokenizer is not None:
        graph_inputs = ", ".join(_code(name) for name in tokenizer.graph_inputs())
        parts.append(
            f"{_code(tokenizer.text_input)} (UTF-8 text) is tokenized by the runtime with "
            f"{_code(tokenizer.tokenizer_file)} into {graph_inputs}, at most {tokenizer.max_length} tokens, "
            "before the graph runs."
        )
    return parts or ["No preprocessing: clients send what the graph takes."]


def _training(report: ModelReport) -> str:
    parts = ["## Training"]
    history = report.history
    if history is not None:
        facts = [
            ["Epochs run", str(history.epochs_run)],
            ["Best epoch", str(history.best_epoch)],
            [
                f"Best validation {history.metric_name}",
                f"{_number(history.best_val_metric)} ({_goal_phrase(history.metric_goal)})",
            ],
            ["Stopped early", _yes_no(history.stopped_early)],
        ]
        parts.append(_table(FACT_HEADER, facts))
    if report.params:
        parts.extend(
            [
                "### Hyperparameters",
                _table(
                    ["Parameter", "Value"], [[name, _value(v)] for name, v in sorted(report.params.items())]
                ),
            ]
        )
    return "\n\n".join(parts) if len(parts) > 1 else ""


def _evaluation(report: ModelReport, confusion: tuple[list[str], list[list[int]]] | None) -> str:
    parts = ["## Evaluation", "On the held-out test set, measured through onnxruntime on the exported graph."]
    if report.metrics:
        rows = [
            [name + (" (primary)" if name == report.primary_metric else ""), _number(value)]
            for name, value in sorted(report.metrics.items())
        ]
        parts.append(_table(["Metric", "Value"], rows))
    per_class = report.evaluation.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        parts.extend(["### Per class", _per_class_table(per_class, report.evaluation.get("labels"))])
    if confusion is not None:
        parts.extend(
            [
                "### Confusion matrix",
                "Rows are the true class, columns the predicted one; the diagonal (bold) is correct.",
                _confusion_table(*confusion),
            ]
        )
    return "\n\n".join(parts) if len(parts) > 2 else ""


def _per_class_table(per_class: Mapping[Any, Any], labels: object) -> str:
    # The labels' order is the model's output order; the dict's is whatever the recipe built.
    order = [str(label) for label in labels] if isinstance(labels, list) else []
    keyed = {str(label): scores for label, scores in per_class.items()}
    names = [label for label in order if label in keyed] + [label for label in keyed if label not in order]
    columns = ("precision", "recall", "f1", "support")
    rows = []
    for label in names:
        scores = keyed[label] if isinstance(keyed[label], Mapping) else {}
        rows.append([label, *(_value(scores[c]) if c in scores else MISSING for c in columns)])
    return _table(["Class", "Precision", "Recall", "F1", "Support"], rows)


def _confusion_table(labels: list[str], matrix: list[list[int]]) -> str:
    short = all(len(label) <= MAX_HEADER_LABEL_CHARS for label in labels)
    columns = labels if short else [str(i) for i in range(len(labels))]
    rows = [
        [label if short else f"{i}: {label}", *(f"**{n}**" if i == j else str(n) for j, n in enumerate(row))]
        for i, (label, row) in enumerate(zip(labels, matrix, strict=True))
    ]
    return _table(["true \\ predicted", *columns], rows)


def _feature_importance(importance: GlobalImportance | None) -> str:
    if importance is None or not importance.features:
        return ""
    shown = importance.features[:TOP_FEATURES]
    explanation = (
        f"Permutation importance on the held-out test set ({importance.samples} samples), through "
        f"onnxruntime: each feature is shuffled across the test rows {importance.repeats} times "
        f"(seed {importance.seed}) and the model scored again. The importance is how much "
        f"{importance.metric} ({_goal_phrase(importance.goal)}; {_number(importance.baseline_value)} "
        "unshuffled) worsens, as the mean ± standard deviation over the shuffles: well above 0, the model "
        "relies on the feature; near 0, it does not use it, or another feature carries the same "
        "information."
    )
    count = len(importance.features)
    scope = f"All {count} features." if len(shown) == count else f"The top {len(shown)} of {count} features."
    rows = [[_code(item.feature), f"{_number(item.importance)} ± {_number(item.std)}"] for item in shown]
    return "\n\n".join(["## Feature importance", explanation, scope, _table(["Feature", "Importance"], rows)])


def _search(search: SearchSummary | None) -> str:
    if search is None:
        return ""
    param_names = list(dict.fromkeys(name for trial in search.trials for name in trial.params))
    rows = [
        [
            str(trial.number) + (" (best)" if trial.number == search.best_trial else ""),
            *(_value(trial.params[name]) if name in trial.params else MISSING for name in param_names),
            _number(trial.value) if trial.value is not None else MISSING,
            trial.state,
            str(trial.epochs_run),
        ]
        for trial in sorted(search.trials, key=lambda t: t.number)
    ]
    facts = [
        ["Sampler", search.sampler],
        ["Objective", f"validation {search.metric_name} ({_goal_phrase(search.metric_goal)})"],
        ["Trials", str(len(search.trials))],
        ["Best trial", str(search.best_trial)],
    ]
    header = ["Trial", *param_names, search.metric_name, "State", "Epochs"]
    return "\n\n".join(["## Hyperparameter search", _table(FACT_HEADER, facts), _table(header, rows)])


def _quantization(report: ModelReport) -> str:
    quant = report.quantization
    if quant is None:
        return ""
    facts = [["Scheme", quant.scheme], ["Per-channel", _yes_no(quant.per_channel)]]
    if quant.base_version is not None:
        facts.append(["fp32 version", str(quant.base_version)])
    facts.append(["Allowed degradation", _number(quant.max_degradation)])
    comparison = _table(
        ["Metric", "fp32", "int8", "Delta (int8 - fp32)"],
        [[quant.metric, _number(quant.fp32_value), _number(quant.quantized_value), _signed(quant.delta)]],
    )
    parts = ["## Quantization", _table(FACT_HEADER, facts), comparison]
    # Whether a delta is a loss depends on the goal, which is known only for the primary metric.
    if quant.metric == report.primary_metric:
        degradation = quant.delta if report.primary_metric_goal == "minimize" else -quant.delta
        verdict = "within" if degradation <= quant.max_degradation else "beyond"
        goal = _goal_phrase(report.primary_metric_goal)
        parts.append(
            f"Degradation {_number(degradation)} ({quant.metric}, {goal}) "
            f"is {verdict} the allowed {_number(quant.max_degradation)}."
        )
    return "\n\n".join(parts)


def _parity(parity: Parity | None) -> str:
    if parity is None:
        return ""
    rows = [
        ["Max abs diff", _number(parity.max_abs_diff)],
        ["Tolerance", _number(parity.tolerance)],
        ["Samples", str(parity.samples)],
        ["Passed", _yes_no(parity.passed)],
    ]
    return "\n\n".join(
        ["## Parity", "PyTorch against onnxruntime on held-out inputs.", _table(FACT_HEADER, rows)]
    )


def _lineage(lineage: Lineage) -> str:
    facts = [
        ["Recipe", _code(lineage.recipe) if lineage.recipe else MISSING],
        ["Code version", _code(lineage.code_version) if lineage.code_version else MISSING],
        ["Seed", str(lineage.seed) if lineage.seed is not None else MISSING],
        ["Dataset hash", _code(lineage.dataset_hash) if lineage.dataset_hash else MISSING],
    ]
    parts = ["## Lineage", _table(FACT_HEADER, facts)]
    if lineage.packages:
        parts.append(_table(["Package", "Version"], [[n, v] for n, v in sorted(lineage.packages.items())]))
    return "\n\n".join(parts)


def _limitations(limitations: str) -> str:
    text = limitations.strip() or "No limitations recorded beyond the out-of-scope uses above."
    return f"## Limitations\n\n{text}"


def _plots(plots: list[str]) -> str:
    if not plots:
        return ""
    links = [f"![{name.rsplit('.', 1)[0]}]({name})" for name in plots]
    return "## Plots\n\n" + "\n\n".join(links)


# --- markdown helpers -----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [_row(header), "|" + "---|" * len(header)]
    lines.extend(_row(row) for row in rows)
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    # A raw "|" ends the cell and a newline ends the table; <br> keeps a multi-line value in one cell.
    return "<br>".join(text.replace("|", "\\|").splitlines()) if text else text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _code(text: str) -> str:
    # A backtick inside would close a single-backtick span early.
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _signed(value: float) -> str:
    return f"{value:+.4g}"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    # numbers' ABCs so numpy scalars from a recipe read like Python ones.
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _number(float(value))
    if isinstance(value, str):
        return value
    # Lists and dicts as JSON, so the card reads the same as the manifest's params.
    return json.dumps(value, sort_keys=True, default=str)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _goal_phrase(goal: Literal["minimize", "maximize"]) -> str:
    return "lower is better" if goal == "minimize" else "higher is better"


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _confusion(evaluation: Mapping[str, Any]) -> tuple[list[str], list[list[int]]] | None:
    labels, matrix = evaluation.get("labels"), evaluation.get("confusion_matrix")
    if labels is None or matrix is None:
        return None
    names = [str(label) for label in labels]
    rows = [[int(n) for n in row] for row in matrix]
    if len(rows) != len(names) or any(len(row) != len(names) for row in rows):
        got = f"{len(rows)} rows of lengths {sorted({len(row) for row in rows})}"
        raise ValueError(
            f"evaluation: confusion_matrix: expected {len(names)}x{len(names)} for the labels, got {got}"
        )
    return names, rows


# --- plots ----------------------------------------------------------------------------------------


def _new_figure(size: tuple[float, float] = PLOT_SIZE_IN) -> Figure:
    # The object-oriented API with an explicit Agg canvas: no pyplot, so no global figure registry or
    # backend switch, and a figure is freed as soon as it goes out of scope.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata=PNG_METADATA)
    figure.clear()
    return buffer.getvalue()


def _epoch_axis(axes: Axes, epochs: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    # Epochs are whole numbers; a tick at 2.5 would suggest otherwise. One epoch has no range to
    # place integer ticks in, so it gets its own.
    if len(set(epochs)) > 1:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.set_xticks(epochs)
    axes.set_xlabel("epoch")


def _loss_png(history: History) -> bytes:
    epochs = [r.epoch for r in history.epochs]
    train = [r.train_loss for r in history.epochs]
    val = [r.val_loss for r in history.epochs]
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(epochs, train, marker="o", markersize=3, label="train")
    axes.plot(epochs, val, marker="o", markersize=3, label="validation")
    if history.best_epoch in epochs:
        best = history.best_epoch
        axes.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best})")
    finite = [v for v in train + val if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > LOG_SCALE_RATIO:
        axes.set_yscale("log")
    _epoch_axis(axes, epochs)
    axes.set_ylabel("loss")
    axes.set_title("Loss per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def _metric_png(history: History) -> bytes:
    epochs = [r.epoch for r in history.epochs]
    values = [r.val_metric for r in history.epochs]
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(
        epochs, values, marker="o", markersize=3, color="tab:green", label=f"validation {history.metric_name}"
    )
    if history.best_epoch in epochs:
        best = history.best_val_metric
        axes.plot(
            [history.best_epoch],
            [best],
            marker="*",
            markersize=14,
            color="tab:red",
            linestyle="none",
            label=f"best: epoch {history.best_epoch}, {_number(best)}",
        )
    _epoch_axis(axes, epochs)
    axes.set_ylabel(history.metric_name)
    axes.set_title(f"Validation {history.metric_name} ({_goal_phrase(history.metric_goal)})")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def _importance_png(importance: GlobalImportance) -> bytes:
    shown = importance.features[:TOP_FEATURES]
    figure = _new_figure((PLOT_SIZE_IN[0], max(2.5, 0.28 * len(shown) + 1.3)))
    axes = figure.add_subplot()
    positions = range(len(shown))
    axes.barh(
        positions,
        [item.importance for item in shown],
        xerr=[item.std for item in shown],
        color="tab:blue",
        ecolor="black",
        capsize=2,
    )
    axes.set_yticks(positions, [item.feature for item in shown])
    # Most important at the top, as the card's table reads.
    axes.invert_yaxis()
    axes.axvline(0.0, color="grey", linewidth=0.8)
    worse = "increase" if importance.goal == "minimize" else "decrease"
    axes.set_xlabel(f"{worse} in test {importance.metric} when shuffled (± std)")
    count = len(importance.features)
    scope = f"top {len(shown)} of {count}" if len(shown) < count else "test set"
    axes.set_title(f"Permutation importance ({scope})")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _confusion_png(labels: list[str], matrix: list[list[int]]) -> bytes:
    import numpy as np

    counts = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    # Colour by the share of each true class so a rare class's errors stay visible; the text is the count.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    side = min(10.0, max(4.0, 0.3 * n + 1.5))
    figure = _new_figure((side + 0.9, side))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of true class")
    ticks = [
        label if len(label) <= MAX_TICK_LABEL_CHARS else label[: MAX_TICK_LABEL_CHARS - 1] + "…"
        for label in labels
    ]
    # Upright labels collide once the row of them is wider than the axes; slanted ones do not.
    slanted = max(len(tick) for tick in ticks) * n > SLANT_TICK_CHARS
    axes.set_xticks(range(n), ticks, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    axes.set_yticks(range(n), ticks)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (test set)")
    if n <= MAX_ANNOTATED_CLASSES:
        size = 8 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                colour = "white" if shares[i, j] > 0.5 else "black"
                axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=size)
    return _png(figure)
