"""Where a cold start's time goes: median milliseconds of each timed step of the fresh processes' reports."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def ms_of(reports: Sequence[dict[str, Any]], field: str) -> list[float]:
    return [1000 * report[field] for report in reports]


def phase_medians(reports: Sequence[dict[str, Any]], load_step: str = "load_model") -> dict[str, float]:
    """Each step's median ms, and the rest of the first invocation outside them (the function: routing,
    decoding, logs, metrics, encoding; the load step, `load_model` or `load_generator`: signature check,
    temporary folder)."""
    medians = step_medians(reports, "phases_s", "first_invocation_s", "everything else")
    if any("load_phases_s" in report for report in reports):
        loads = [{**r, "load_s": r["phases_s"].get(load_step, 0.0)} for r in reports]
        medians |= {
            f"{load_step}: {name}": ms
            for name, ms in step_medians(loads, "load_phases_s", "load_s", "the rest").items()
        }
    return medians


def step_medians(
    reports: Sequence[dict[str, Any]], steps_field: str, total_field: str, rest_name: str
) -> dict[str, float]:
    names = sorted({name for report in reports for name in report[steps_field]})
    medians = {
        name: round(statistics.median(1000 * r[steps_field].get(name, 0.0) for r in reports), 1)
        for name in names
    }
    rest = [1000 * (r[total_field] - sum(r[steps_field].values())) for r in reports]
    return {**medians, rest_name: round(statistics.median(rest), 1)}
