"""Timing in one process: A and B interleaved, because this machine is noisy and a ratio of two runs made
minutes apart measures the noise."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def interleaved(
    first: Callable[[], object],
    second: Callable[[], object],
    *,
    repeats: int,
    warmup: int = 5,
) -> tuple[list[float], list[float]]:
    """Seconds per call of `first` and of `second`, alternating call by call, and which goes first too.

    The garbage collector is off while timing, as in timeit, so neither side pays for the other's garbage."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    enabled = gc.isenabled()
    gc.disable()
    try:
        for index in range(repeats):
            order = ((0, first), (1, second)) if index % 2 == 0 else ((1, second), (0, first))
            for slot, call in order:
                started = time.perf_counter()
                call()
                times[slot].append(time.perf_counter() - started)
    finally:
        if enabled:
            gc.enable()
    return times


def per_call(call: Callable[[], object], *, repeats: int, warmup: int = 5) -> list[float]:
    """Seconds per call, for a measurement that has no partner."""
    return interleaved(call, lambda: None, repeats=repeats, warmup=warmup)[0]
