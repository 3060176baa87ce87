"""A cold start against its hand-written baseline, both in fresh processes: the rows a cold-start case
records, and where each side's time goes (median milliseconds of each timed step of their reports)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import BenchResults

RATIO_TARGET = 1.2


@dataclass(frozen=True, slots=True)
class ColdStartRows:
    """The names of a cold start's three rows: the function's first answer, the baseline's, their ratio."""

    first: str
    baseline: str
    ratio: str


def record_first_invocations(
    results: BenchResults,
    case: str,
    rows: ColdStartRows,
    maas_runs: Sequence[dict[str, Any]],
    baseline_runs: Sequence[dict[str, Any]],
    *,
    load_step: str = "load_model",
    first_details: Mapping[str, Any] | None = None,
    ratio_details: Mapping[str, Any] | None = None,
) -> None:
    """Each side's first-invocation milliseconds with their phases, and their ratio against RATIO_TARGET
    (pair by pair: the runs of a pair were made moments apart)."""
    maas_ms = ms_of(maas_runs, "first_invocation_s")
    baseline_ms = ms_of(baseline_runs, "first_invocation_s")
    for name, runs, samples, step, extra in (
        (rows.first, maas_runs, maas_ms, load_step, first_details or {}),
        (rows.baseline, baseline_runs, baseline_ms, load_step, {}),
    ):
        details = {
            **extra,
            "phases_ms_median": phase_medians(runs, step),
            "cpu_ms_median": round(statistics.median(ms_of(runs, "first_invocation_cpu_s")), 1),
        }
        results.record(case, name, samples, "ms", details=details)
    ratios = [m / b for m, b in zip(maas_ms, baseline_ms, strict=True)]
    results.record(
        case,
        rows.ratio,
        ratios,
        "x",
        target=f"≤ {RATIO_TARGET:g}x",
        met=statistics.median(ratios) <= RATIO_TARGET,
        details={
            "ratio_of_medians": round(statistics.median(maas_ms) / statistics.median(baseline_ms), 2),
            **(ratio_details or {}),
        },
    )


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
