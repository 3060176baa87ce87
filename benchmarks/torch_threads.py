"""The thread count each side of a comparison runs at: the faster of one and as many as there are usable
CPUs, timed first, for torch and onnxruntime alike, so neither side is judged by its threading trouble."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping

import torch

from benchmarks.timing import per_call
from benchmarks.workloads import repeats_within

US = 1e6
# Seconds spent timing each side at each thread count before the pair, to pick its faster one.
THREADS_BUDGET_S = 0.5
LEAST_THREADS_CALLS, MOST_THREADS_CALLS = 3, 100


def thread_counts(threads: int) -> list[int]:
    return sorted({1, threads})


def median_us_by_threads(
    calls: Mapping[int, Callable[[], object]], *, before: Callable[[int], object] = lambda count: None
) -> dict[int, float]:
    """The median microseconds of each call, keyed by the thread count it runs at; `before` is called with
    the count first (torch's count is process-wide: set once, outside the timed calls)."""
    microseconds: dict[int, float] = {}
    for count, call in calls.items():
        before(count)
        repeats = repeats_within(
            (call,), THREADS_BUDGET_S, least=LEAST_THREADS_CALLS, most=MOST_THREADS_CALLS
        )
        microseconds[count] = statistics.median(per_call(call, repeats=repeats, warmup=1)) * US
    return microseconds


def fastest(microseconds: Mapping[int, float]) -> int:
    return min(microseconds, key=microseconds.__getitem__)


def fastest_torch_threads(eager: Callable[[], object], threads: int) -> tuple[int, dict[int, float]]:
    """torch's faster thread count, one or `threads` (left set), with the median microseconds of each.

    torch's OpenMP threads meet at the end of every op; on two cores shared with other work, measured
    here, two threads ran the small recipes 10 to 40 times slower than one. Comparing against the slower
    setting would credit onnxruntime with torch's threading trouble."""
    microseconds = median_us_by_threads(
        dict.fromkeys(thread_counts(threads), eager), before=torch.set_num_threads
    )
    chosen = fastest(microseconds)
    torch.set_num_threads(chosen)
    return chosen, microseconds
