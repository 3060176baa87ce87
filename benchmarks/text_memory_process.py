"""A warm infer function's memory around one large text request, in a fresh process.

Request {"function_path", "warm_event", "event", "repeats"}: import functions/infer/app.py, answer
`warm_event` (a small request that loads and warms the model), then answer `event` `repeats` times. Before
each, the peak is reset (/proc/self/clear_refs), so each request's peak is its own. Report: resident memory
once warm, and per request its status, peak and the resident memory it left behind.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.isolated import import_app, peak_rss_kib, read_request, rss_kib, write_report

# Writing 5 to clear_refs resets VmHWM to the current resident size (Linux 4.0+).
RESET_PEAK = "5"


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text(RESET_PEAK)


def main() -> None:
    request = read_request()
    function = import_app(Path(request["function_path"]))
    warm = function.lambda_handler(request["warm_event"], None)
    if warm["statusCode"] != 200:
        raise RuntimeError(f"warm-up request: expected 200, got {warm['statusCode']}: {warm['body'][:500]}")
    warm_kib = rss_kib()
    runs = []
    for _ in range(request["repeats"]):
        reset_peak()
        before_kib = rss_kib()
        started = time.perf_counter()
        response = function.lambda_handler(request["event"], None)
        seconds = time.perf_counter() - started
        peak_kib = peak_rss_kib()
        status = response["statusCode"]
        body_head = response["body"][:300] if status != 200 else ""
        del response
        runs.append(
            {
                "status": status,
                "body_head": body_head,
                "before_rss_kib": before_kib,
                "peak_rss_kib": peak_kib,
                "after_rss_kib": rss_kib(),
                "seconds": seconds,
            }
        )
    write_report({"warm_rss_kib": warm_kib, "runs": runs})


if __name__ == "__main__":
    main()
