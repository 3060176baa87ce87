"""The structured log lines a function writes, captured as Lambda would ship them to CloudWatch."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class JsonLogs:
    """The structured log lines the process writes, formatted exactly as Lambda would ship them."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@contextmanager
def captured_json_logs() -> Iterator[JsonLogs]:
    # Powertools binds its handler to the stdout of import time, which pytest's capture does not see.
    from maas.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std_logger = logging.getLogger(logger.name)
    std_logger.addHandler(handler)
    try:
        yield JsonLogs(stream)
    finally:
        std_logger.removeHandler(handler)
