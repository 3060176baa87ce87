"""Evaluation metrics by task, computed with scikit-learn on what onnxruntime served.

Each function returns the scalar metrics (for the manifest's `metrics` and the promotion gate) and the
structured details that are not one number (for the manifest's `evaluation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sklearn import metrics as sk

from maas.training.metric_goals import MetricGoal

Task = Literal["regression", "classification", "embedding"]

Evaluation = tuple[dict[str, float], dict[str, Any]]


def regression_metrics(predicted: np.ndarray, targets: np.ndarray) -> Evaluation:
    """MSE, MAE and R² (the mean of the per-output R², scikit-learn's default), in float64."""
    got = predicted.astype(np.float64).reshape(len(predicted), -1)
    want = targets.astype(np.float64).reshape(len(targets), -1)
    return (
        {
            "mse": float(sk.mean_squared_error(want, got)),
            "mae": float(sk.mean_absolute_error(want, got)),
            "r2": float(sk.r2_score(want, got)),
        },
        {},
    )


def classification_metrics(scores: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> Evaluation:
    """Accuracy, macro precision/recall/F1, and per-class metrics with the confusion matrix.

    `scores` are logits or probabilities, one column per class; the prediction is the arg max."""
    predicted = np.argmax(scores, axis=1)
    classes = list(range(len(labels)))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        targets, predicted, labels=classes, zero_division=0
    )
    macro = sk.precision_recall_fscore_support(
        targets, predicted, labels=classes, average="macro", zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    confusion = sk.confusion_matrix(targets, predicted, labels=classes)
    return (
        {
            "accuracy": float(sk.accuracy_score(targets, predicted)),
            "precision_macro": float(macro[0]),
            "recall_macro": float(macro[1]),
            "f1_macro": float(macro[2]),
        },
        {"labels": list(labels), "per_class": per_class, "confusion_matrix": confusion.tolist()},
    )


def embedding_metrics(served: np.ndarray, reference: np.ndarray) -> Evaluation:
    """Cosine similarity of each served embedding to the torch reference embedding of the same text."""
    got = served.astype(np.float64)
    want = reference.astype(np.float64)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cosine = np.sum(got * want, axis=1) / np.maximum(norms, 1e-12)
    return (
        {"cosine_mean": float(np.mean(cosine)), "cosine_min": float(np.min(cosine))},
        {"samples": len(cosine)},
    )


def evaluate(
    task: Task,
    served: np.ndarray,
    *,
    targets: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
) -> Evaluation:
    """The task's metrics for `served` outputs: against targets, or against the torch reference."""
    if task == "regression" and targets is not None:
        return regression_metrics(served, targets)
    if task == "classification" and targets is not None and labels is not None:
        return classification_metrics(served, targets, labels)
    if task == "embedding" and reference is not None:
        return embedding_metrics(served, reference)
    raise ValueError(f"evaluate: task {task!r} is missing its targets, labels or reference")


def improved(value: float, best: float, goal: MetricGoal) -> bool:
    """Strictly better; NaN never improves, so a diverged epoch or trial is never chosen."""
    if np.isnan(value):
        return False
    if np.isnan(best):
        return True
    return value < best if goal == "minimize" else value > best
