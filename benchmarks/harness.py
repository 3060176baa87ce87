"""The benchmark run: the machine, each measurement beside its target, and the fresh processes that measure.

A case measures and records; it never asserts on a number. A missed target is reported as missed, and only
an error (a job that fails, a process that crashes) fails `make bench`. Adding a case is adding one
`test_*.py` module whose tests take the `bench_results` fixture and call `record`. How the run's rows
become bench-results/ (replacing the record, or merged into it) is `benchmarks.record`'s.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.paths import ROOT

from benchmarks.record import Measurement, Run, merged, previous_runs, write_record

RESULTS_DIR = ROOT / "bench-results"
MIB = 1024 * 1024
VERSIONED_PACKAGES = ("onnxruntime", "numpy", "torch", "boto3", "moto")
# Variables that would point a measured process at another store or change how the function behaves.
ISOLATED_ENV_PREFIXES = ("AWS_", "MAAS_", "POWERTOOLS_")


class BenchError(RuntimeError):
    """A benchmark could not measure: this fails `make bench`, unlike a missed target."""


class BenchResults:
    """Every measurement of one `make bench` run, in the order the cases recorded them."""

    def __init__(self) -> None:
        self.started_at = datetime.now(UTC)
        self.measurements: list[Measurement] = []
        self.markdown: str | None = None

    def record(
        self,
        case: str,
        name: str,
        value: float | Sequence[float],
        unit: str,
        *,
        target: str | None = None,
        met: bool | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Measurement:
        """One measurement: a single value, or the samples of its repeats (reported as median, min, max)."""
        samples = (float(value),) if isinstance(value, int | float) else tuple(float(v) for v in value)
        if not samples:
            raise BenchError(f"{case}: {name}: expected at least one sample, got none")
        if (target is None) != (met is None):
            raise BenchError(f"{case}: {name}: a target needs its verdict and a verdict its target")
        measurement = Measurement(case, name, unit, samples, target, met, details or {})
        self.measurements.append(measurement)
        return measurement

    def write(self, folder: Path = RESULTS_DIR, *, merge: bool = False) -> str | None:
        """Write results.json and results.md: this run alone, or with `merge` this run's cases in place
        of their older rows in the record (see `benchmarks.record`). Nothing when no case measured, so
        an erroring run keeps the last results. Returns the markdown."""
        if not self.measurements:
            return None
        run = Run(machine_info(self.started_at), list(self.measurements))
        runs = merged(previous_runs(folder), run) if merge else [run]
        self.markdown = write_record(folder, runs)
        return self.markdown


def machine_info(when: datetime) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": when.isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "commit": _git_commit(),
    }


def isolated_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without AWS or maas settings, plus exactly the ones a case gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_ENV_PREFIXES)}
    env.update(overrides)
    return env


def run_isolated(
    module: str, request: Mapping[str, Any], env: Mapping[str, str], timeout_s: float
) -> dict[str, Any]:
    """Run `python -m module` in a fresh process and return the report it wrote (see `isolated`).

    A fresh process per measurement: nothing the benchmark itself imported or allocated is counted."""
    with tempfile.TemporaryDirectory(prefix="maas-bench-") as folder:
        request_path, report_path, log_path = (
            Path(folder) / n for n in ("request.json", "report.json", "log")
        )
        request_path.write_text(json.dumps(request))
        argv = [sys.executable, "-m", module, str(request_path), str(report_path)]
        # The function logs JSON to stdout; a file keeps a long job's logs out of this process's memory.
        with log_path.open("wb") as log:
            try:
                done = subprocess.run(
                    argv,
                    cwd=ROOT,
                    env=dict(env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise BenchError(
                    f"{module}: expected to finish within {timeout_s:.0f} s, it did not"
                ) from exc
        if done.returncode != 0 or not report_path.exists():
            tail = log_path.read_bytes()[-4000:].decode(errors="replace")
            raise BenchError(f"{module}: expected exit 0 and a report, got exit {done.returncode}:\n{tail}")
        report: dict[str, Any] = json.loads(report_path.read_text())
        return report


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / MIB, 1)
    return None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
