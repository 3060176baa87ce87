"""One batch job in a fresh process, as Lambda runs it: import functions/batch/app.py, then invoke it once.

Request: {"function_path", "event", "remaining_ms"}. Report: the handler's response, resident memory after
import (the container's idle footprint) and the process's peak, and the seconds each step took.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.isolated import cpu_seconds, import_app, peak_rss_kib, read_request, rss_kib, write_report


class Context:
    """The one method of Lambda's context the batch function reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def main() -> None:
    request = read_request()
    started = time.perf_counter()
    function = import_app(Path(request["function_path"]))
    imported = time.perf_counter()
    baseline_kib, import_peak_kib, import_cpu_s = rss_kib(), peak_rss_kib(), cpu_seconds()
    response = function.lambda_handler(request["event"], Context(request["remaining_ms"]))
    finished = time.perf_counter()
    write_report(
        {
            "response": response,
            "baseline_rss_kib": baseline_kib,
            "import_peak_rss_kib": import_peak_kib,
            "peak_rss_kib": peak_rss_kib(),
            "after_rss_kib": rss_kib(),
            "import_s": imported - started,
            "invoke_s": finished - imported,
            "invoke_cpu_s": cpu_seconds() - import_cpu_s,
        }
    )


if __name__ == "__main__":
    main()
