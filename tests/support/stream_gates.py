"""Gates between a streaming test and the fake function it serves in the same process: the function waits
on them between chunks and records what it did, so a test can prove a chunk reached the client before the
next one was produced, and that a departed client stopped the producer, without timing anything."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

# Long enough for any machine; a gate that is never opened fails its test instead of hanging it.
GATE_SECONDS = 20.0


class StreamGates:
    """What one fake streaming function waits on (`open_second`) and reports (`second_produced`,
    `closed`, the events it received)."""

    def __init__(self) -> None:
        self.open_second = threading.Event()
        self.second_produced = threading.Event()
        self.closed = threading.Event()
        self.events: list[dict[str, Any]] = []

    def wait_to_produce_second(self) -> None:
        if not self.open_second.wait(GATE_SECONDS):
            raise TimeoutError("the test never let the second chunk be produced")
        self.second_produced.set()


# By project folder: the fake function finds its gates from its own file's location.
_GATES: dict[str, StreamGates] = {}


def gates_for(project: Path) -> StreamGates:
    """Fresh gates for the function project at `project` (replacing any earlier ones)."""
    gates = StreamGates()
    _GATES[str(project.resolve())] = gates
    return gates


def gates_of(function_file: str) -> StreamGates:
    """The gates of the project holding `function_file` (<project>/<CodeUri>/app.py)."""
    return _GATES[str(Path(function_file).resolve().parent.parent)]
