"""Import time of each function against `import onnxruntime, numpy` alone, each in a fresh process.

A Lambda cold start pays for every module the handler's file imports before the first request runs, so
each functions/*/app.py should import in at most twice the time of the two libraries inference cannot do
without. A function's import is all of its app.py: the modules and building the app, which today includes
making the S3 client. The libraries the infer function uses, imported without maas, show how much of it
is theirs. The rounds alternate the order of the subjects, so a noisy moment hits all of them; a first,
unrecorded round fills the page cache and compiles bytecode.

Every function also makes its S3 client at import (botocore's import and the client: the lead's decision,
since Lambda's init phase runs with boosted CPU and SnapStart snapshots it), so that part is measured on its
own, and each function's import is split into it, onnxruntime and numpy (for the functions that run
models), and the rest: maas's own modules and the other libraries. The rest is what the ≤ 2x target leaves
room for, and its details say how much room that is. Each function's import is then broken down with
`-X importtime`, so the details say which packages to defer.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.paths import ROOT

from benchmarks.harness import BenchError, BenchResults, isolated_env, run_isolated

if TYPE_CHECKING:
    from benchmarks.store import BenchStore

CASE = "import time"
CHILD = "benchmarks.import_process"
FUNCTIONS = ("infer", "registry", "batch", "async", "generate")
# The registry function runs no model, so onnxruntime and numpy are no part of its import.
MODEL_RUNNERS = ("infer", "batch", "async", "generate")
FLOOR = "import onnxruntime, numpy"
FLOOR_MODULES = ("onnxruntime", "numpy")
# botocore's import and the S3 client every function makes at import (maas.aws_clients is botocore's).
S3_CLIENT = "import botocore and make the S3 client (maas.aws_clients.s3_client)"
S3_CLIENT_MODULES = ("maas.aws_clients",)
# Every library the infer function's first request uses, without maas: how much of its import is theirs.
LIBRARIES_MODULES = (
    "onnxruntime",
    "numpy",
    "pydantic",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.event_handler",
    "maas.aws_clients",
)
LIBRARIES = f"import {', '.join(LIBRARIES_MODULES)} and make the S3 client"
ROUNDS = 5
RATIO_TARGET = 2.0
CHILD_TIMEOUT_S = 120.0
# Packages the details name on their own: what the first request may not need.
NAMED_PACKAGES = (
    "aws_lambda_powertools",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.models",
    "aws_lambda_powertools.event_handler.openapi.swagger_ui",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "pydantic",
    "boto3",
    "botocore",
    "onnxruntime",
    "numpy",
    "tokenizers",
    "orjson",
)
# Self time is summed per package at this depth (two for these, so the breakdown names the subpackage).
GROUPED_DEEPER = ("aws_lambda_powertools", "maas")
TOP_ENTRIES = 15


@dataclass(frozen=True, slots=True)
class ImportLine:
    self_us: int
    cumulative_us: int
    name: str


def test_each_function_imports_within_twice_onnxruntime_and_numpy(
    bench_results: BenchResults, bench_store: BenchStore
) -> None:
    env = isolated_env(bench_store.function_env())
    # Bytecode as a deployed package has it: the unrecorded first round rewrites what an edit made stale.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subjects: list[tuple[str, dict[str, Any]]] = [
        (FLOOR, {"modules": list(FLOOR_MODULES)}),
        (S3_CLIENT, {"modules": list(S3_CLIENT_MODULES), "s3_client": True}),
        (LIBRARIES, {"modules": list(LIBRARIES_MODULES), "s3_client": True}),
        *((name, {"function_path": str(function_path(name))}) for name in FUNCTIONS),
    ]
    for _, request in subjects:
        run_isolated(CHILD, request, env, CHILD_TIMEOUT_S)
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for index in range(ROUNDS):
        turn = index % len(subjects)
        for name, request in subjects[turn:] + subjects[:turn]:
            reports[name].append(run_isolated(CHILD, request, env, CHILD_TIMEOUT_S))

    floor_ms = [1000 * report["import_s"] for report in reports[FLOOR]]
    bench_results.record(CASE, FLOOR, floor_ms, "ms", details=import_details(reports[FLOOR]))
    s3_ms = [1000 * report["import_s"] for report in reports[S3_CLIENT]]
    client_ms = [1000 * report["client_s"] for report in reports[S3_CLIENT]]
    bench_results.record(
        CASE,
        f"(a) {S3_CLIENT}",
        s3_ms,
        "ms",
        details={
            "client_ms": round(statistics.median(client_ms), 1),
            "botocore_import_ms": round(
                statistics.median(total - client for total, client in zip(s3_ms, client_ms, strict=True)), 1
            ),
            **import_details(reports[S3_CLIENT]),
        },
    )
    with_s3 = [floor + s3 for floor, s3 in zip(floor_ms, s3_ms, strict=True)]
    bench_results.record(
        CASE,
        f"{FLOOR}, plus (a): what a model-running function pays before any of maas / {FLOOR}",
        [total / floor for total, floor in zip(with_s3, floor_ms, strict=True)],
        "x",
    )
    bench_results.record(
        CASE,
        f"{LIBRARIES} (the infer function's libraries, without maas)",
        [1000 * report["import_s"] for report in reports[LIBRARIES]],
        "ms",
        details=import_details(reports[LIBRARIES]),
    )
    for name in FUNCTIONS:
        function_ms = [1000 * report["import_s"] for report in reports[name]]
        bench_results.record(
            CASE,
            f"functions/{name}/app.py",
            function_ms,
            "ms",
            details=import_details(reports[name]),
        )
        # Each round's ratio, from subjects imported moments apart.
        ratios = [function / floor for function, floor in zip(function_ms, floor_ms, strict=True)]
        bench_results.record(
            CASE,
            f"functions/{name}/app.py / {FLOOR}",
            ratios,
            "x",
            target=f"≤ {RATIO_TARGET:g}x",
            met=statistics.median(ratios) <= RATIO_TARGET,
            details={
                "ratio_of_medians": round(statistics.median(function_ms) / statistics.median(floor_ms), 2)
            },
        )
        record_rest(bench_results, name, function_ms, floor_ms, s3_ms)

    for name in FUNCTIONS:
        traced = run_isolated(
            CHILD, {"function_path": str(function_path(name)), "importtime": True}, env, CHILD_TIMEOUT_S
        )
        lines = parse_importtime(traced["importtime"])
        if not lines:
            raise BenchError(f"functions/{name}/app.py: expected -X importtime lines, got none")
        bench_results.record(
            CASE,
            f"functions/{name}/app.py under -X importtime (one run, breakdown in details)",
            1000 * traced["import_s"],
            "ms",
            details=importtime_breakdown(lines),
        )


def record_rest(
    bench_results: BenchResults,
    name: str,
    function_ms: Sequence[float],
    floor_ms: Sequence[float],
    s3_ms: Sequence[float],
) -> None:
    """(b): a function's import less (a) and, for a function that runs models, less the floor: maas's own
    modules and the other libraries. Its details say how much of it the ≤ 2x target leaves room for, which
    is negative when (a) alone costs more than the floor."""
    runs_models = name in MODEL_RUNNERS
    paid_anyway = [s3 + (floor if runs_models else 0.0) for floor, s3 in zip(floor_ms, s3_ms, strict=True)]
    rest = [function - paid for function, paid in zip(function_ms, paid_anyway, strict=True)]
    allowed = [RATIO_TARGET * floor - paid for floor, paid in zip(floor_ms, paid_anyway, strict=True)]
    ratios = [function / paid for function, paid in zip(function_ms, paid_anyway, strict=True)]
    paid = f"{FLOOR} and (a)" if runs_models else "(a)"
    bench_results.record(
        CASE,
        f"(b) functions/{name}/app.py beyond {paid}: maas's own modules and the other libraries",
        rest,
        "ms",
        details={
            "room_the_2x_target_leaves_ms": round(statistics.median(allowed), 1),
            f"ratio_to_{'floor_plus_a' if runs_models else 'a'}": round(statistics.median(ratios), 2),
        },
    )


def function_path(name: str) -> Path:
    return ROOT / "functions" / name / "app.py"


def import_details(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    last = reports[-1]
    return {
        "rss_after_import_mb": round(statistics.median(r["rss_kib"] for r in reports) / 1024, 1),
        "modules_loaded": last["modules_loaded"],
        "heavy_packages_loaded": last["watched_loaded"],
    }


def parse_importtime(text_lines: Sequence[str]) -> list[ImportLine]:
    """`import time: <self us> | <cumulative us> | <indented name>` lines; the header line is skipped."""
    parsed: list[ImportLine] = []
    for line in text_lines:
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        parsed.append(ImportLine(int(fields[0]), int(fields[1]), fields[2].strip()))
    return parsed


def package_of(module: str) -> str:
    parts = module.split(".")
    depth = 2 if parts[0] in GROUPED_DEEPER else 1
    return ".".join(parts[:depth])


def importtime_breakdown(lines: Sequence[ImportLine]) -> dict[str, Any]:
    """Self time summed per package (these add up to the whole import), the entries with the most
    cumulative time, the maas modules among them, and the named packages' cumulative time where they
    were first imported."""
    self_ms: dict[str, float] = defaultdict(float)
    for line in lines:
        self_ms[package_of(line.name)] += line.self_us / 1000
    by_cumulative = sorted(lines, key=lambda line: line.cumulative_us, reverse=True)
    cumulative = {line.name: round(line.cumulative_us / 1000, 1) for line in lines}
    return {
        "total_self_ms": round(sum(line.self_us for line in lines) / 1000, 1),
        # maas's own code: its modules' self time, wire types built at import included.
        "maas_self_ms": round(sum(line.self_us for line in lines if line.name.startswith("maas")) / 1000, 1),
        "self_ms_by_package": {
            name: round(ms, 1)
            for name, ms in sorted(self_ms.items(), key=lambda item: -item[1])[:TOP_ENTRIES]
        },
        "top_cumulative_ms": {
            line.name: round(line.cumulative_us / 1000, 1) for line in by_cumulative[:TOP_ENTRIES]
        },
        "maas_cumulative_ms": {
            line.name: round(line.cumulative_us / 1000, 1)
            for line in [line for line in by_cumulative if line.name.startswith("maas.")][:TOP_ENTRIES]
        },
        "named_cumulative_ms": {name: cumulative[name] for name in NAMED_PACKAGES if name in cumulative},
    }
