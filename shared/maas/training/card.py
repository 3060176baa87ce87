"""The model card every published version carries: card.md and the plots it links, rendered to bytes.

Pure: no I/O and no clock, so the same report always renders the same card, and the publisher decides
where the files go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maas.registry import GlobalImportance, Lineage, Parity, Preprocessing
from maas.training.history import SearchSummary
from maas.training.markdown import cell_value, code_span, one_line, shape_text, signed, table, yes_no
from maas.training.plots import confusion_png, importance_png, loss_png, metric_png
from maas.training.report import TOP_FEATURES, ModelReport, format_number, goal_phrase

__all__ = [
    "CARD_FILE",
    "CONFUSION_PLOT",
    "IMPORTANCE_PLOT",
    "LOSS_PLOT",
    "METRIC_PLOT",
    "render_report",
]

CARD_FILE = "card.md"
LOSS_PLOT = "loss.png"
METRIC_PLOT = "metric.png"
CONFUSION_PLOT = "confusion_matrix.png"
IMPORTANCE_PLOT = "feature_importance.png"

# Recipes record their split sizes among the params under these names.
SPLIT_PARAMS = (("train", "n_train"), ("validation", "n_val"), ("test", "n_test"))
# Longer labels make a confusion table too wide to read, so its columns switch to class indices.
MAX_HEADER_LABEL_CHARS = 6
MISSING = "—"
FACT_HEADER = ("Property", "Value")


def render_report(report: ModelReport) -> dict[str, bytes]:
    """card.md and the PNG plots that apply to this report, keyed by file name.

    Raises ValueError when `evaluation` holds a confusion matrix that does not match its labels.
    """
    confusion = report.confusion()
    plots: dict[str, bytes] = {}
    history = report.history
    if history is not None and history.epochs:
        plots[LOSS_PLOT] = loss_png(history)
        plots[METRIC_PLOT] = metric_png(history)
    if confusion is not None:
        plots[CONFUSION_PLOT] = confusion_png(*confusion)
    importance = report.feature_importance
    if importance is not None and importance.features:
        plots[IMPORTANCE_PLOT] = importance_png(importance)
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
            ["Primary metric", f"{report.primary_metric} ({goal_phrase(report.primary_metric_goal)})"]
        )
        if report.primary_metric in report.metrics:
            rows.append(
                [f"Test {report.primary_metric}", format_number(report.metrics[report.primary_metric])]
            )
    if report.lineage.recipe:
        rows.append(["Recipe", report.lineage.recipe])
    parts = [f"# {one_line(report.name)}"]
    if report.description.strip():
        parts.append(report.description.strip())
    parts.append(table(FACT_HEADER, rows))
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
    splits = [[split, cell_value(report.params[key])] for split, key in SPLIT_PARAMS if key in report.params]
    if splits:
        parts.append(table(["Split", "Examples"], splits))
    if report.lineage.dataset_hash:
        parts.append(f"Dataset hash (sha256): {code_span(report.lineage.dataset_hash)}")
    return "\n\n".join(parts)


def _inputs_outputs(report: ModelReport) -> str:
    rows = [
        [direction, code_span(spec.name), spec.datatype, shape_text(spec.shape)]
        for direction, specs in (("input", report.signature.inputs), ("output", report.signature.outputs))
        for spec in specs
    ]
    parts = [
        "## Inputs and outputs",
        table(["", "Name", "Datatype", "Shape"], rows),
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
            f"{code_span(norm.input)} is standardized inside the graph with {scope}, fitted on the training "
            "split only: clients send raw values."
        )
    tokenizer = preprocessing.tokenizer
    if tokenizer is not None:
        graph_inputs = ", ".join(code_span(name) for name in tokenizer.graph_inputs())
        parts.append(
            f"{code_span(tokenizer.text_input)} (UTF-8 text) is tokenized by the runtime with "
            f"{code_span(tokenizer.tokenizer_file)} into {graph_inputs}, at most {tokenizer.max_length} "
            "tokens, before the graph runs."
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
                f"{format_number(history.best_val_metric)} ({goal_phrase(history.metric_goal)})",
            ],
            ["Stopped early", yes_no(history.stopped_early)],
        ]
        parts.append(table(FACT_HEADER, facts))
    if report.params:
        parts.extend(
            [
                "### Hyperparameters",
                table(
                    ["Parameter", "Value"],
                    [[name, cell_value(v)] for name, v in sorted(report.params.items())],
                ),
            ]
        )
    return "\n\n".join(parts) if len(parts) > 1 else ""


def _evaluation(report: ModelReport, confusion: tuple[list[str], list[list[int]]] | None) -> str:
    parts = ["## Evaluation", "On the held-out test set, measured through onnxruntime on the exported graph."]
    if report.metrics:
        rows = [
            [name + (" (primary)" if name == report.primary_metric else ""), format_number(value)]
            for name, value in sorted(report.metrics.items())
        ]
        parts.append(table(["Metric", "Value"], rows))
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
        rows.append([label, *(cell_value(scores[c]) if c in scores else MISSING for c in columns)])
    return table(["Class", "Precision", "Recall", "F1", "Support"], rows)


def _confusion_table(labels: list[str], matrix: list[list[int]]) -> str:
    short = all(len(label) <= MAX_HEADER_LABEL_CHARS for label in labels)
    columns = labels if short else [str(i) for i in range(len(labels))]
    rows = [
        [label if short else f"{i}: {label}", *(f"**{n}**" if i == j else str(n) for j, n in enumerate(row))]
        for i, (label, row) in enumerate(zip(labels, matrix, strict=True))
    ]
    return table(["true \\ predicted", *columns], rows)


def _feature_importance(importance: GlobalImportance | None) -> str:
    if importance is None or not importance.features:
        return ""
    shown = importance.features[:TOP_FEATURES]
    explanation = (
        f"Permutation importance on the held-out test set ({importance.samples} samples), through "
        f"onnxruntime: each feature is shuffled across the test rows {importance.repeats} times "
        f"(seed {importance.seed}) and the model scored again. The importance is how much "
        f"{importance.metric} ({goal_phrase(importance.goal)}; {format_number(importance.baseline_value)} "
        "unshuffled) worsens, as the mean ± standard deviation over the shuffles: well above 0, the model "
        "relies on the feature; near 0, it does not use it, or another feature carries the same "
        "information."
    )
    count = len(importance.features)
    scope = f"All {count} features." if len(shown) == count else f"The top {len(shown)} of {count} features."
    rows = [
        [code_span(item.feature), f"{format_number(item.importance)} ± {format_number(item.std)}"]
        for item in shown
    ]
    return "\n\n".join(["## Feature importance", explanation, scope, table(["Feature", "Importance"], rows)])


def _search(search: SearchSummary | None) -> str:
    if search is None:
        return ""
    param_names = list(dict.fromkeys(name for trial in search.trials for name in trial.params))
    rows = [
        [
            str(trial.number) + (" (best)" if trial.number == search.best_trial else ""),
            *(cell_value(trial.params[name]) if name in trial.params else MISSING for name in param_names),
            format_number(trial.value) if trial.value is not None else MISSING,
            trial.state,
            str(trial.epochs_run),
        ]
        for trial in sorted(search.trials, key=lambda t: t.number)
    ]
    facts = [
        ["Sampler", search.sampler],
        ["Objective", f"validation {search.metric_name} ({goal_phrase(search.metric_goal)})"],
        ["Trials", str(len(search.trials))],
        ["Best trial", str(search.best_trial)],
    ]
    header = ["Trial", *param_names, search.metric_name, "State", "Epochs"]
    return "\n\n".join(["## Hyperparameter search", table(FACT_HEADER, facts), table(header, rows)])


def _quantization(report: ModelReport) -> str:
    quant = report.quantization
    if quant is None:
        return ""
    facts = [["Scheme", quant.scheme], ["Per-channel", yes_no(quant.per_channel)]]
    if quant.base_version is not None:
        facts.append(["fp32 version", str(quant.base_version)])
    facts.append(["Allowed degradation", format_number(quant.max_degradation)])
    # "int8-dynamic", "int4-weight-only": the precision is the scheme's first word.
    precision = quant.scheme.partition("-")[0]
    comparison = table(
        ["Metric", "fp32", precision, f"Delta ({precision} - fp32)"],
        [
            [
                quant.metric,
                format_number(quant.fp32_value),
                format_number(quant.quantized_value),
                signed(quant.delta),
            ]
        ],
    )
    parts = ["## Quantization", table(FACT_HEADER, facts), comparison]
    # Whether a delta is a loss depends on the goal, which is known only for the primary metric.
    if quant.metric == report.primary_metric:
        degradation = quant.delta if report.primary_metric_goal == "minimize" else -quant.delta
        verdict = "within" if degradation <= quant.max_degradation else "beyond"
        goal = goal_phrase(report.primary_metric_goal)
        parts.append(
            f"Degradation {format_number(degradation)} ({quant.metric}, {goal}) "
            f"is {verdict} the allowed {format_number(quant.max_degradation)}."
        )
    return "\n\n".join(parts)


def _parity(parity: Parity | None) -> str:
    if parity is None:
        return ""
    rows = [
        ["Max abs diff", format_number(parity.max_abs_diff)],
        ["Tolerance", format_number(parity.tolerance)],
        ["Samples", str(parity.samples)],
        ["Passed", yes_no(parity.passed)],
    ]
    return "\n\n".join(
        ["## Parity", "PyTorch against onnxruntime on held-out inputs.", table(FACT_HEADER, rows)]
    )


def _lineage(lineage: Lineage) -> str:
    facts = [
        ["Recipe", code_span(lineage.recipe) if lineage.recipe else MISSING],
        ["Code version", code_span(lineage.code_version) if lineage.code_version else MISSING],
        ["Seed", str(lineage.seed) if lineage.seed is not None else MISSING],
        ["Dataset hash", code_span(lineage.dataset_hash) if lineage.dataset_hash else MISSING],
    ]
    parts = ["## Lineage", table(FACT_HEADER, facts)]
    if lineage.packages:
        parts.append(table(["Package", "Version"], [[n, v] for n, v in sorted(lineage.packages.items())]))
    return "\n\n".join(parts)


def _limitations(limitations: str) -> str:
    text = limitations.strip() or "No limitations recorded beyond the out-of-scope uses above."
    return f"## Limitations\n\n{text}"


def _plots(plots: list[str]) -> str:
    if not plots:
        return ""
    links = [f"![{name.rsplit('.', 1)[0]}]({name})" for name in plots]
    return "## Plots\n\n" + "\n\n".join(links)
