"""One import in a fresh process: a function's app.py, or plain modules (`import onnxruntime, numpy`).

Request {"function_path"} or {"modules": [...]}, "s3_client": true to also make the S3 client every function
makes at import (maas.aws_clients.s3_client, after the modules), and "importtime": true for a breakdown.
Report: the seconds the import took (the client included), the seconds the client alone took, resident
memory after it, the modules it loaded, and which heavy packages are among them; with "importtime", also
the `-X importtime` lines of that import (Python writes them to file descriptor 2, which goes to a temporary
file around the measured import only).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from benchmarks.isolated import import_app, peak_rss_kib, read_request, rss_kib, write_report

MODULE = "benchmarks.import_process"
# Packages whose presence after import says what a function pays for at start.
WATCHED_MODULES = (
    "onnxruntime",
    "numpy",
    "boto3",
    "botocore",
    "pydantic",
    "tokenizers",
    "orjson",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.models",
    "aws_lambda_powertools.event_handler.openapi.swagger_ui",
)


def main() -> None:
    request = read_request()
    if request.get("importtime") and "importtime" not in sys._xoptions:
        # The flag only takes effect at startup: start over as `python -X importtime -m <this module>`.
        os.execv(sys.executable, [sys.executable, "-X", "importtime", "-m", MODULE, *sys.argv[1:]])
    before = set(sys.modules)
    client_s: list[float] = []
    with tempfile.TemporaryFile() as captured:
        started, finished = capturing_stderr(captured, lambda: import_subject(request, client_s))
        captured.seek(0)
        importtime = [
            line
            for line in captured.read().decode(errors="replace").splitlines()
            if line.startswith("import time")
        ]
    loaded = set(sys.modules) - before
    write_report(
        {
            "import_s": finished - started,
            "client_s": sum(client_s),
            "rss_kib": rss_kib(),
            "peak_rss_kib": peak_rss_kib(),
            "modules_loaded": len(loaded),
            "watched_loaded": [name for name in WATCHED_MODULES if name in loaded],
            "importtime": importtime,
        }
    )


def import_subject(request: dict[str, Any], client_s: list[float]) -> None:
    """Import the subject; with "s3_client", then make the S3 client and append the seconds it took."""
    if "function_path" in request:
        import_app(Path(request["function_path"]))
    else:
        for name in request["modules"]:
            importlib.import_module(name)
    if request.get("s3_client"):
        from maas.aws_clients import s3_client

        started = time.perf_counter()
        # The functions pass Settings.endpoint_url; botocore reads the same AWS_ENDPOINT_URL without it.
        s3_client()
        client_s.append(time.perf_counter() - started)


def capturing_stderr(target: BinaryIO, call: Callable[[], None]) -> tuple[float, float]:
    """Run `call` with file descriptor 2 sent to `target`; returns its start and end times."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(target.fileno(), 2)
    try:
        started = time.perf_counter()
        call()
        return started, time.perf_counter()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


if __name__ == "__main__":
    main()
