"""What a model's card and plots say, as plain data: the ModelReport, and the phrasing both render with.

The pipeline (or a bring-your-own import) gathers a ModelReport before publishing; `maas.training.card`
renders it to card.md and the plots it links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from maas.registry import GlobalImportance, Lineage, ManifestDraft, Parity, Preprocessing, Quantization
from maas.registry.manifest import serving_signature
from maas.signature import Signature
from maas.training.history import History, SearchSummary

# Features in the card's importance table and plot: the rest of a 64-pixel image is a long tail of zeros.
TOP_FEATURES = 15


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

    @classmethod
    def of_draft(
        cls,
        name: str,
        draft: ManifestDraft,
        *,
        data_description: str,
        limitations: str,
        task: str | None = None,
        intended_use: str = "",
        history: History | None = None,
        search: SearchSummary | None = None,
    ) -> ModelReport:
        """The report of a model about to be published as `draft`, plus what only its maker knows.

        `task` defaults to the draft's."""
        return cls(
            name=name,
            task=task if task is not None else draft.task or "",
            description=draft.description,
            intended_use=intended_use,
            data_description=data_description,
            signature=serving_signature(draft.signature, draft.preprocessing),
            preprocessing=draft.preprocessing,
            metrics=draft.metrics,
            evaluation=draft.evaluation,
            params=draft.params,
            primary_metric=draft.primary_metric,
            primary_metric_goal=draft.primary_metric_goal,
            history=history,
            search=search,
            quantization=draft.quantization,
            parity=draft.parity,
            lineage=draft.lineage,
            limitations=limitations,
            feature_importance=draft.feature_importance,
        )

    def confusion(self) -> tuple[list[str], list[list[int]]] | None:
        """The labels and confusion matrix in `evaluation`, if it holds one.

        Raises ValueError when the matrix does not match its labels."""
        labels, matrix = self.evaluation.get("labels"), self.evaluation.get("confusion_matrix")
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


def format_number(value: float) -> str:
    return f"{value:.4g}"


def goal_phrase(goal: Literal["minimize", "maximize"]) -> str:
    return "lower is better" if goal == "minimize" else "higher is better"
