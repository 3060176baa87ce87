"""The measured side of a benchmark: a fresh process that reads its request and writes one JSON report.

Stdlib only, so importing it adds nothing a Lambda function would not have: the process's memory is the
function's. The parent side is `harness.run_isolated`.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# `python -m <module> <request file> <report file>`
REQUEST_ARG = 1
REPORT_ARG = 2


def read_request() -> dict[str, Any]:
    request: dict[str, Any] = json.loads(Path(sys.argv[REQUEST_ARG]).read_text())
    return request


def write_report(report: dict[str, Any]) -> None:
    Path(sys.argv[REPORT_ARG]).write_text(json.dumps(report))


def import_app(path: Path) -> ModuleType:
    """Import a function's app.py as Lambda's runtime does: once, as a module of its own."""
    spec = importlib.util.spec_from_file_location("app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_kib() -> int:
    """Resident memory now: what the process holds between invocations, as Lambda's container would."""
    return _status_kib("VmRSS")


def peak_rss_kib() -> int:
    """The most resident memory this process image has held.

    Not getrusage's ru_maxrss: Linux carries it across exec from the forked copy of the parent, so a child
    of a big parent would report the parent's size."""
    return _status_kib("VmHWM")


def cpu_seconds() -> float:
    """User plus system CPU time so far: beside wall time, it tells computing from waiting on storage."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status: expected a {field} line (Linux only)")
