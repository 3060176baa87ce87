"""Which way a metric is better, and by how much one value is worse than another: what the publish gates
need of metrics, without the evaluation code (scikit-learn) behind them."""

from __future__ import annotations

from typing import Literal

MetricGoal = Literal["minimize", "maximize"]


def degradation(value: float, reference: float, goal: MetricGoal) -> float:
    """How much worse `value` is than `reference`, in the metric's units (negative when better)."""
    return value - reference if goal == "minimize" else reference - value
