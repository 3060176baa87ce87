"""Ending a generation at the first stop string, without ever emitting any part of it.

Text that could still grow into a stop string (a suffix that is some stop string's beginning) is held back
until the next text settles it; a stop string can span any number of tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Released:
    """Text safe to emit, and whether a stop string ended the generation right after it."""

    text: str
    stopped: bool = False


class StopStringMatcher:
    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._held = ""

    def push(self, text: str) -> Released:
        """Emittable text up to the first stop string, or up to what might begin one."""
        if not self._stops:
            return Released(text)
        pending = self._held + text
        # The held text holds no stop string (it would have ended the generation), so any one found is
        # new; the earliest wins.
        found = [index for index in (pending.find(stop) for stop in self._stops) if index >= 0]
        if found:
            self._held = ""
            return Released(pending[: min(found)], stopped=True)
        keep = max(_overlap(pending, stop) for stop in self._stops)
        self._held = pending[len(pending) - keep :]
        return Released(pending[: len(pending) - keep])

    def flush(self) -> str:
        """At the end of generation: the held text was no stop string after all."""
        held, self._held = self._held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """The length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for length in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
