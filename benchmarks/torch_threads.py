"""torch's thread count for a comparison: the faster of one and as many as onnxruntime's, timed first."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from benchmarks.timing import per_call
from benchmarks.workloads import repeats_within

US = 1e6
# Seconds spent timing torch at each thread count before the pair, to pick its faster one.
TORCH_THREADS_BUDGET_S = 0.5
LEAST_TORCH_THREADS_CALLS, MOST_TORCH_THREADS_CALLS = 3, 100


def fastest_torch_threads(eager: Callable[[], object], threads: int) -> tuple[int, dict[int, float]]:
    """torch's faster thread count, one or `threads` (left set), with the median microseconds of each.

    torch's OpenMP threads meet at the end of every op; on two cores shared with other work, measured
    here, two threads ran the small recipes 10 to 40 times slower than one. Comparing against the slower
    setting would credit onnxruntime with torch's threading trouble."""
    microseconds: dict[int, float] = {}
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        calls = repeats_within(
            (eager,), TORCH_THREADS_BUDGET_S, least=LEAST_TORCH_THREADS_CALLS, most=MOST_TORCH_THREADS_CALLS
        )
        microseconds[count] = statistics.median(per_call(eager, repeats=calls, warmup=1)) * US
    fastest = min(microseconds, key=microseconds.__getitem__)
    torch.set_num_threads(fastest)
    return fastest, microseconds
