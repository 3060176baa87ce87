"""The benchmark record in bench-results/: each run's machine and measurements, as JSON and as markdown.

A run of the whole suite replaces the record. A run of some cases (files named on the command line, -k,
-m, deselected tests: see conftest) is merged into it: each case it measured replaces every older row of
that case, and the other cases' rows stay as they were, each under the run that measured it. Select whole
cases: one parametrization of a case (-k seed-mlp) leaves that case with only the rows it measured. The
markdown shows one section per run ("Measured <date> on <machine>", its targets, then every
measurement), oldest first; results.json marks each row with `measured_at`, its run's date.

results.md is the committed record and results.json stays local (.gitignore), so a merge reads the rows
from results.md; a row results.json also holds (the same case, measurement and date) keeps its samples
and details from there.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
TARGETS_HEADING = "#### Targets"
EVERY_MEASUREMENT_HEADING = "#### Every measurement"
TABLE_HEADER = ("| case | measurement | value | target | met |", "|---|---|---|---|---|")
# Fixed-precision units; anything else prints with 3 significant digits.
UNIT_DECIMALS = {"MB": 1, "%": 1, "s": 1, "ms": 2, "rows/s": 0, "tok/s": 1, "us": 0, "x": 2}
_MACHINE_LINE = re.compile(
    r"^Measured (?P<date>\S+) on (?P<cpu>.+) \((?P<cores>\d+) cores, (?P<memory>[\d.]+|None) GiB\), "
    r"Python (?P<python>\S+), onnxruntime (?P<onnxruntime>\S+), numpy (?P<numpy>\S+), torch (?P<torch>\S+)\.$"
)
_VALUE = re.compile(
    r"^(?P<number>-?[\d,]*\.?\d+(?:e[+-]?\d+)?)(?:%| (?P<unit>.+?))?"
    r"(?: \(min (?P<min>\S+), max (?P<max>\S+), (?P<runs>\d+) runs\))?$"
)
_MET = {"yes": True, "**no**": False, "": None}


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

    def as_json(self, measured_at: str) -> dict[str, Any]:
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
            "measured_at": measured_at,
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


@dataclass(frozen=True, slots=True)
class Run:
    """What one `make bench` measured, on which machine, when (`machine["date"]`)."""

    machine: Mapping[str, Any]
    measurements: Sequence[Measurement]

    @property
    def date(self) -> str:
        return str(self.machine["date"])


def write_record(folder: Path, runs: Sequence[Run]) -> str:
    """results.json and results.md for `runs` (oldest first); returns the markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    latest = runs[-1].machine
    document = {
        "machine": dict(latest),
        "runs": [dict(run.machine) for run in runs],
        "measurements": [m.as_json(run.date) for run in runs for m in run.measurements],
    }
    (folder / RESULTS_JSON).write_text(json.dumps(document, indent=2) + "\n")
    markdown = record_markdown(runs)
    (folder / RESULTS_MD).write_text(markdown)
    return markdown


def merged(previous: Sequence[Run], current: Run) -> list[Run]:
    """`previous` without the cases `current` measured, then `current`; runs left without rows go."""
    measured = {m.case for m in current.measurements}
    kept = [
        Run(run.machine, [m for m in run.measurements if m.case not in measured])
        for run in previous
        if run.date != current.date
    ]
    return [run for run in kept if run.measurements] + [current]


def previous_runs(folder: Path) -> list[Run]:
    """The record as results.md shows it, with samples and details from results.json where it has them."""
    md_path = folder / RESULTS_MD
    if not md_path.is_file():
        return []
    runs = parse_markdown(md_path.read_text())
    json_path = folder / RESULTS_JSON
    if json_path.is_file():
        runs = [_enriched(run, _json_rows(json.loads(json_path.read_text()))) for run in runs]
    return runs


def record_markdown(runs: Sequence[Run]) -> str:
    return "\n".join(markdown_table(run.machine, run.measurements) for run in runs)


def markdown_table(machine: Mapping[str, Any], measurements: Sequence[Measurement]) -> str:
    """One run: its targets first, each with its verdict, then every measurement (the README shows it)."""
    packages = machine["packages"]
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), Python {machine['python']}, onnxruntime {packages['onnxruntime']}, "
        f"numpy {packages['numpy']}, torch {packages['torch']}.",
        "",
        TARGETS_HEADING,
        "",
        *TABLE_HEADER,
        *(_row(m) for m in measurements if m.target is not None),
        "",
        EVERY_MEASUREMENT_HEADING,
        "",
        *TABLE_HEADER,
        *(_row(m) for m in measurements),
    ]
    return "\n".join(lines) + "\n"


def parse_markdown(text: str) -> list[Run]:
    """The runs of a results.md: each section's machine line and its "Every measurement" rows."""
    runs: list[Run] = []
    machine: dict[str, Any] | None = None
    rows: list[Measurement] = []
    in_every = False
    for line in text.splitlines():
        header = _MACHINE_LINE.match(line)
        if header:
            if machine is not None:
                runs.append(Run(machine, rows))
            machine, rows, in_every = _machine_of(header), [], False
        elif line.startswith("#### "):
            in_every = line.strip() == EVERY_MEASUREMENT_HEADING
        elif in_every and line.startswith("| ") and line not in TABLE_HEADER:
            rows.append(_parse_row(line))
    if machine is not None:
        runs.append(Run(machine, rows))
    return runs


def format_number(value: float, unit: str) -> str:
    decimals = UNIT_DECIMALS.get(unit)
    if decimals is None:
        return f"{value:.3g}"
    return f"{value:,.{decimals}f}"


def format_value(value: float, unit: str) -> str:
    number = format_number(value, unit)
    return f"{number}%" if unit == "%" else f"{number} {unit}"


def spread(item: Mapping[str, Any]) -> list[float]:
    """Samples with a recorded median, min, max and count, for a row that kept no samples."""
    repeats = int(item.get("repeats", 1))
    if repeats <= 1:
        return [item["value"]]
    if repeats == 2:
        return [item["min"], item["max"]]
    return [item["min"], *[item["median"]] * (repeats - 2), item["max"]]


def runs_of_document(document: Mapping[str, Any]) -> list[Run]:
    """The runs of a results.json; one written before runs were recorded is one run."""
    machines = document.get("runs") or [document["machine"]]
    by_date: dict[str, list[Measurement]] = {str(m["date"]): [] for m in machines}
    only = str(machines[-1]["date"])
    for item in document["measurements"]:
        by_date.setdefault(str(item.get("measured_at") or only), []).append(_measurement_of(item))
    return [Run(machine, by_date[str(machine["date"])]) for machine in machines]


def _row(m: Measurement) -> str:
    met = "" if m.met is None else ("yes" if m.met else "**no**")
    return f"| {m.case} | {m.name} | {m.value_text()} | {m.target or ''} | {met} |"


def _machine_of(header: re.Match[str]) -> dict[str, Any]:
    memory = header["memory"]
    return {
        "date": header["date"],
        "cpu": header["cpu"],
        "cores": int(header["cores"]),
        "memory_gib": None if memory == "None" else float(memory),
        "python": header["python"],
        "packages": {name: header[name] for name in ("onnxruntime", "numpy", "torch")},
    }


def _parse_row(line: str) -> Measurement:
    cells = line.strip().removeprefix("| ").removesuffix(" |").split(" | ")
    if len(cells) != 5:
        raise ValueError(f"results.md: expected 5 cells in a measurement row, got {len(cells)}: {line!r}")
    case, name, value_text, target, met = (cell.strip() for cell in cells)
    value = _VALUE.match(value_text)
    if value is None:
        raise ValueError(f"results.md: expected a value like '1.23 x (min ...)', got {value_text!r}")
    number = _number(value["number"])
    unit = "%" if value["unit"] is None and value_text.split(" (")[0].endswith("%") else value["unit"] or ""
    runs = int(value["runs"] or 1)
    item = {"value": number, "median": number, "repeats": runs}
    if value["runs"]:
        item |= {"min": _number(value["min"]), "max": _number(value["max"])}
    return Measurement(case, name, unit, tuple(spread(item)), target or None, _MET[met])


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _measurement_of(item: Mapping[str, Any]) -> Measurement:
    return Measurement(
        case=item["case"],
        name=item["measurement"],
        unit=item["unit"],
        samples=tuple(item.get("samples") or spread(item)),
        target=item.get("target"),
        met=item.get("met"),
        details=item.get("details") or {},
    )


def _json_rows(document: Mapping[str, Any]) -> dict[tuple[str, str, str], Measurement]:
    return {(m.case, m.name, run.date): m for run in runs_of_document(document) for m in run.measurements}


def _enriched(run: Run, rows: Mapping[tuple[str, str, str], Measurement]) -> Run:
    return Run(run.machine, [rows.get((m.case, m.name, run.date), m) for m in run.measurements])
