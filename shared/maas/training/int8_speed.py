"""Whether an int8 graph is worth publishing for speed: fp32 and int8 timed on the recipe's own benchmark
input, interleaved in one process, and the gate that refuses an int8 version that is not fast enough.

int8 is published to be faster; one that is not costs accuracy for nothing. Measured here (decision 0026),
MiniLM's int8 ran batch 1 about 2.6x faster than fp32, while text-bert's (hidden size 64) and the seed MLP's
were no faster: a graph that small spends its time between ops, and quantizing activations adds ops.

The measurement lives in the draft's params (its INT8_SPEED_PARAMS), so the manifest shows what was
measured, and the publishing gate can judge a draft on its own.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from maas.training.onnx_checks import open_session

DEFAULT_MIN_INT8_SPEEDUP = 1.2
# Interleaved fp32/int8 pairs, after WARMUP_PAIRS untimed: a fixed count, so the gate costs the same
# every time (MiniLM at batch 32, about 0.2 s a call: 8 s) and its median is not one lucky call.
SPEED_PAIRS = 21
WARMUP_PAIRS = 3
# One intra-op thread: the cost of a call rather than how well it spreads over the build machine's cores,
# and what a Lambda function of up to 2,654 MB runs (config.lambda_vcpus).
SPEED_THREADS = 1
US = 1e6
# The params keys the measurement is recorded under.
FP32_US, INT8_US, SPEEDUP, MIN_SPEEDUP, BATCH, PAIRS = (
    "int8_speed_fp32_us",
    "int8_speed_int8_us",
    "int8_speedup",
    "int8_min_speedup",
    "int8_speed_batch",
    "int8_speed_pairs",
)
INT8_SPEED_PARAMS = (FP32_US, INT8_US, SPEEDUP, MIN_SPEEDUP, BATCH, PAIRS)
OVERRIDE_HINT = (
    "to publish it anyway, lower the threshold with --min-int8-speedup or `quantization: min_speedup` in "
    "the --config file (0 switches the check off)"
)

Feeds = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class Int8Speed:
    """Median microseconds per call of each graph, and the median of the pairs' fp32/int8 ratios."""

    fp32_us: float
    int8_us: float
    speedup: float
    min_speedup: float
    batch: int
    pairs: int

    def as_params(self) -> dict[str, float | int]:
        return {
            FP32_US: round(self.fp32_us, 1),
            INT8_US: round(self.int8_us, 1),
            SPEEDUP: round(self.speedup, 3),
            MIN_SPEEDUP: self.min_speedup,
            BATCH: self.batch,
            PAIRS: self.pairs,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Int8Speed | None:
        """The measurement a draft records; None for a draft that has none (fp32, or an LLM's precisions)."""
        if SPEEDUP not in params:
            return None
        return cls(
            fp32_us=float(params[FP32_US]),
            int8_us=float(params[INT8_US]),
            speedup=float(params[SPEEDUP]),
            min_speedup=float(params[MIN_SPEEDUP]),
            batch=int(params[BATCH]),
            pairs=int(params[PAIRS]),
        )


def speed_refusal(speed: Int8Speed) -> str | None:
    """Why the int8 version must not be published for its speed, with the numbers; None when it may."""
    if speed.speedup >= speed.min_speedup:
        return None
    return (
        f"quantization: expected int8 to run at least {speed.min_speedup:g}x as fast as fp32 on the recipe's "
        f"benchmark input (batch {speed.batch}, {SPEED_THREADS} intra-op thread, median of {speed.pairs} "
        f"interleaved pairs), got {speed.speedup:.2f}x: fp32 {speed.fp32_us:.1f} us, int8 "
        f"{speed.int8_us:.1f} us per call; {OVERRIDE_HINT}"
    )


def benchmark_feeds(test_inputs: Feeds, batch: int) -> dict[str, npt.NDArray[Any]]:
    """The recipe's benchmark input: the first `batch` rows of its test set (wrapping a smaller one)."""
    return {
        name: np.ascontiguousarray(np.take(array, np.arange(batch), axis=0, mode="wrap"))
        for name, array in test_inputs.items()
    }


def measure_int8_speed(
    fp32_files: dict[str, bytes],
    int8_files: dict[str, bytes],
    feeds: Feeds,
    *,
    min_speedup: float,
    pairs: int = SPEED_PAIRS,
) -> Int8Speed:
    """fp32 and int8 sessions (one thread each, graph optimization as served) timed call by call in turns."""
    fp32 = open_session(fp32_files, threads=SPEED_THREADS)
    int8 = open_session(int8_files, threads=SPEED_THREADS)
    fp32_s, int8_s = _interleaved(_runner(fp32, feeds), _runner(int8, feeds), pairs=pairs)
    return Int8Speed(
        fp32_us=statistics.median(fp32_s) * US,
        int8_us=statistics.median(int8_s) * US,
        speedup=statistics.median(f / i for f, i in zip(fp32_s, int8_s, strict=True)),
        min_speedup=min_speedup,
        batch=len(next(iter(feeds.values()))),
        pairs=pairs,
    )


def _runner(session: ort.InferenceSession, feeds: Feeds) -> Callable[[], object]:
    inputs = dict(feeds)
    return lambda: session.run(None, inputs)


def _interleaved(
    first: Callable[[], object], second: Callable[[], object], *, pairs: int
) -> tuple[list[float], list[float]]:
    """Seconds per call of each, a pair at a time, alternating which goes first, with the collector off as
    timeit does."""
    for _ in range(WARMUP_PAIRS):
        first()
        second()
    enabled = gc.isenabled()
    gc.disable()
    try:
        timed = [_pair(first, second, second_first=index % 2 == 1) for index in range(pairs)]
    finally:
        if enabled:
            gc.enable()
    return [one for one, _ in timed], [two for _, two in timed]


def _pair(
    first: Callable[[], object], second: Callable[[], object], *, second_first: bool
) -> tuple[float, float]:
    if second_first:
        second_s = _seconds(second)
        return _seconds(first), second_s
    first_s = _seconds(first)
    return first_s, _seconds(second)


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
