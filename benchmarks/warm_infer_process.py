"""A warm infer function answering one request per invocation, in a fresh process.

Request {"function_path", "event", "bodies"}: import functions/infer/app.py, invoke it once with `event`
(the cold invocation, which loads the model), then once per body in `bodies`, each the same event with that
body. The events are built before the clock starts, so the timing is the handler's alone: what Lambda's
runtime adds per invocation (its API round trip, the event's JSON) is not counted, which flatters the
per-request side. Report: the cold invocation's seconds, each warm invocation's seconds, their statuses.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from benchmarks.isolated import cpu_seconds, import_app, read_request, write_report


def main() -> None:
    request = read_request()
    function = import_app(Path(request["function_path"]))
    template = request["event"]
    events = [{**template, "body": body} for body in request["bodies"]]

    started = time.perf_counter()
    cold = function.lambda_handler(template, None)
    cold_s = time.perf_counter() - started
    statuses: Counter[int] = Counter()
    seconds: list[float] = []
    last_body: str | None = None
    cpu_started = cpu_seconds()
    for event in events:
        started = time.perf_counter()
        response = function.lambda_handler(event, None)
        seconds.append(time.perf_counter() - started)
        statuses[response["statusCode"]] += 1
        last_body = response["body"]
    write_report(
        {
            "cold_status": cold["statusCode"],
            "cold_s": cold_s,
            "warm_s": seconds,
            "warm_cpu_s": cpu_seconds() - cpu_started,
            "statuses": {str(status): count for status, count in statuses.items()},
            "last_body": last_body,
        }
    )


if __name__ == "__main__":
    main()
