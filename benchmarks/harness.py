"""The benchmark record: the machine, and each measurement beside its target, as JSON and a markdown table.

A case measures and records; it never asserts on a number. A missed target is reported as missed, and only
an error (a job that fails, a process that crashes) fails `make bench`. Adding a case is adding one
`test_*.py` module whose tests take the `bench_results` fixture and call `record`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.paths import ROOT

RESULTS_DIR = ROOT / "bench-results"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
MIB = 1024 * 1024
VERSIONED_PACKAGES = ("onnxruntime", "numpy", "torch", "boto3", "moto")
# Variables that would point a measured process at another store or change how the function behaves.
ISOLATED_ENV_PREFIXES = ("AWS_", "MAAS_", "POWERTOOLS_")
# Fixed-precision units; anything else prints with 3 significant digits.
UNIT_DECIMALS = {"MB": 1, "%": 1, "s": 1, "ms": 2, "rows/s": 0, "us": 0, "x": 2}


class BenchError(RuntimeError):
    """A benchmark could not measure: this fails `make bench`, unlike a missed target."""


@dataclass(frozen=True, slots=True)
class Measurement:
    case: str
    name: str
    unit: str
    samples: tuple[float, ...]
    target: str | None = None
    met: bool | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return statistics.median(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "measurement": self.name,
            "value": self.value,
            "unit": self.unit,
            "repeats": len(self.samples),
            "median": self.value,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": list(self.samples),
            "target": self.target,
            "met": self.met,
            "details": dict(self.details),
        }

    def value_text(self) -> str:
        text = format_value(self.value, self.unit)
        if len(self.samples) > 1:
            low, high = (
                format_number(min(self.samples), self.unit),
                format_number(max(self.samples), self.unit),
            )
            text += f" (min {low}, max {high}, {len(self.samples)} runs)"
        return text


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

    def write(self, folder: Path = RESULTS_DIR) -> tuple[Path, Path] | None:
        """Write both files; nothing when no case measured, so an erroring run keeps the last results."""
        if not self.measurements:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        machine = machine_info(self.started_at)
        json_path, md_path = folder / RESULTS_JSON, folder / RESULTS_MD
        document = {"machine": machine, "measurements": [m.as_json() for m in self.measurements]}
        json_path.write_text(json.dumps(document, indent=2) + "\n")
        self.markdown = markdown_table(machine, self.measurements)
        md_path.write_text(self.markdown)
        return json_path, md_path


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


def markdown_table(machine: Mapping[str, Any], measurements: Sequence[Measurement]) -> str:
    """The targets first, each with its verdict, then every measurement: what the README shows."""
    packages = machine["packages"]
    header = ["| case | measurement | value | target | met |", "|---|---|---|---|---|"]
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), Python {machine['python']}, onnxruntime {packages['onnxruntime']}, "
        f"numpy {packages['numpy']}, torch {packages['torch']}.",
        "",
        "#### Targets",
        "",
        *header,
        *(_row(m) for m in measurements if m.target is not None),
        "",
        "#### Every measurement",
        "",
        *header,
        *(_row(m) for m in measurements),
    ]
    return "\n".join(lines) + "\n"


def _row(m: Measurement) -> str:
    met = "" if m.met is None else ("yes" if m.met else "**no**")
    return f"| {m.case} | {m.name} | {m.value_text()} | {m.target or ''} | {met} |"


def _spread(item: Mapping[str, Any]) -> list[float]:
    """Samples with the recorded median, min, max and count, for a results.json that kept no samples."""
    repeats = int(item.get("repeats", 1))
    if repeats <= 1:
        return [item["value"]]
    if repeats == 2:
        return [item["min"], item["max"]]
    return [item["min"], *[item["median"]] * (repeats - 2), item["max"]]


def rewrite_markdown(json_path: Path) -> str:
    """The table again from a results.json, e.g. one written before the table's layout changed."""
    document = json.loads(json_path.read_text())
    measurements = [
        Measurement(
            case=item["case"],
            name=item["measurement"],
            unit=item["unit"],
            samples=tuple(item.get("samples") or _spread(item)),
            target=item.get("target"),
            met=item.get("met"),
        )
        for item in document["measurements"]
    ]
    return markdown_table(document["machine"], measurements)


def format_number(value: float, unit: str) -> str:
    decimals = UNIT_DECIMALS.get(unit)
    if decimals is None:
        return f"{value:.3g}"
    return f"{value:,.{decimals}f}"


def format_value(value: float, unit: str) -> str:
    number = format_number(value, unit)
    return f"{number}%" if unit == "%" else f"{number} {unit}"


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
