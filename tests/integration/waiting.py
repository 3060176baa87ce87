"""Waiting for what a background thread (a poller, a server) will eventually do."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

WAIT_SECONDS = 20.0


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
