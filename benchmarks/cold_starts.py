"""A cold start against its hand-written baseline, both in fresh processes: the infer event both answer, the
check that they agree, the rows a cold-start case records, and where each side's time goes (median
milliseconds of each timed step of their reports)."""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tests.support.events import load_event

from benchmarks.harness import BenchError, BenchResults, run_isolated
from maas.registry import Manifest

RATIO_TARGET = 1.2
# The answers of both sides must agree: they ran the same graph on the same tensors.
ANSWER_TOLERANCE = 1e-4


@dataclass(frozen=True, slots=True)
class ColdStartRows:
    """The names of a cold start's three rows: the function's first answer, the baseline's, their ratio."""

    first: str
    baseline: str
    ratio: str


Report = dict[str, Any]


def paired_runs(
    child: str,
    maas_request: Mapping[str, Any],
    baseline_request: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    pairs: int,
    timeout_s: float,
    check: Callable[[Report, Report], None],
) -> tuple[list[Report], list[Report]]:
    """The maas and baseline reports of `pairs` pairs of fresh `child` processes, after one unrecorded pair
    that fills the page cache and writes bytecode. Which side goes first alternates; `check(maas, baseline)`
    sees every pair's reports, so both sides must agree on every answer."""

    def run_pair(index: int) -> tuple[Report, Report]:
        sides = [("maas", maas_request), ("baseline", baseline_request)]
        reports = {
            side: run_isolated(child, request, env, timeout_s)
            for side, request in (sides if index % 2 == 0 else sides[::-1])
        }
        check(reports["maas"], reports["baseline"])
        return reports["maas"], reports["baseline"]

    run_pair(0)
    measured = [run_pair(index) for index in range(pairs)]
    return [pair[0] for pair in measured], [pair[1] for pair in measured]


def record_first_invocations(
    results: BenchResults,
    case: str,
    rows: ColdStartRows,
    maas_runs: Sequence[dict[str, Any]],
    baseline_runs: Sequence[dict[str, Any]],
    *,
    load_step: str = "load_model",
    ratio_target: float = RATIO_TARGET,
    first_details: Mapping[str, Any] | None = None,
    ratio_details: Mapping[str, Any] | None = None,
) -> None:
    """Each side's first-invocation milliseconds with their phases, and their ratio against `ratio_target`
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
        target=f"≤ {ratio_target:g}x",
        met=statistics.median(ratios) <= ratio_target,
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


def infer_event(model_name: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """tests/events/http_v2_infer.json, addressed to `model_name` with these inputs."""
    event = copy.deepcopy(load_event("http_v2_infer.json"))
    path = f"/v2/models/{model_name}/infer"
    body = json.dumps({"id": "cold-start", "inputs": inputs})
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"name": model_name}
    event["headers"]["content-length"] = str(len(body.encode()))
    event["body"] = body
    return event


def check_answers(manifest: Manifest, maas: dict[str, Any], baseline: dict[str, Any]) -> None:
    response = maas["response"]
    if response.get("statusCode") != 200:
        raise BenchError(f"{manifest.name}: expected a 200 to the first request, got {response}")
    body = json.loads(response["body"])
    if body.get("model_version") != str(manifest.version):
        raise BenchError(f"{manifest.name}: expected version {manifest.version} to answer, got {body}")
    served = np.asarray(body["outputs"][0]["data"], dtype=np.float64).ravel()
    expected = np.asarray(baseline["output"], dtype=np.float64)
    if served.shape != expected.shape or not np.allclose(served, expected, atol=ANSWER_TOLERANCE):
        raise BenchError(
            f"{manifest.name}: expected the function's first output to match the baseline's within "
            f"{ANSWER_TOLERANCE}, got {served[:4]}... against {expected[:4]}..."
        )
