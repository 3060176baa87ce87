"""Per-run time budgets: a deadline, and the one thread that stops runs still going past theirs."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass

import onnxruntime as ort


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a run must have finished (on time.monotonic()), and the budget that set it, for the error."""

    at: float
    # Completes "inference exceeded ...": "the time budget of 25 s (MAAS_REQUEST_TIMEOUT)".
    budget: str

    @classmethod
    def within(cls, seconds: float, budget: str) -> Deadline:
        return cls(time.monotonic() + seconds, budget)

    def seconds_left(self) -> float:
        return self.at - time.monotonic()


class _Watchdog:
    """One daemon thread that sets `terminate` on the RunOptions of runs still going past their deadline.

    onnxruntime checks the flag between nodes and fails the run. A threading.Timer per run would start a
    thread per request (about a millisecond measured here, on the warm path); this costs a heap push."""

    def __init__(self) -> None:
        self._wakeup = threading.Condition()
        self._heap: list[tuple[float, int, ort.RunOptions]] = []
        self._running: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, at: float, options: ort.RunOptions) -> int:
        with self._wakeup:
            token = next(self._tokens)
            heapq.heappush(self._heap, (at, token, options))
            self._running.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maas-run-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == token:
                self._wakeup.notify()  # the thread sleeps until a later deadline
            return token

    def release(self, token: int) -> None:
        """The run is over; its entry leaves the heap when it reaches the top."""
        with self._wakeup:
            self._running.discard(token)

    def _loop(self) -> None:
        with self._wakeup:
            while True:
                while self._heap and self._heap[0][1] not in self._running:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wakeup.wait()
                    continue
                at, token, options = self._heap[0]
                delay = at - time.monotonic()
                if delay > 0:
                    self._wakeup.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._running.discard(token)
                options.terminate = True


WATCHDOG = _Watchdog()
