"""What training leaves behind besides weights: the per-epoch curves and, after a search, every trial.

Plain data, so the loop, the search and the report share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    # The recipe's validation metric (e.g. accuracy or mse), the one early stopping watches.
    val_metric: float
    lr: float


@dataclass(frozen=True)
class History:
    metric_name: str
    metric_goal: Literal["minimize", "maximize"]
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)

    @property
    def best_val_metric(self) -> float:
        for record in self.epochs:
            if record.epoch == self.best_epoch:
                return record.val_metric
        return float("nan")


@dataclass(frozen=True)
class TrialSummary:
    """One hyperparameter-search trial: what it tried and the validation score it reached."""

    number: int
    params: dict[str, Any]
    # The validation metric (the search objective); None for a trial that failed or was pruned.
    value: float | None
    state: str
    epochs_run: int = 0


@dataclass(frozen=True)
class SearchSummary:
    sampler: Literal["grid", "random", "tpe"]
    metric_name: str
    metric_goal: Literal["minimize", "maximize"]
    trials: list[TrialSummary]
    best_trial: int
