"""What each open session holds: the memory its load measurably added, and the temp space its mapped files
keep allocated after their folder is gone.

Recorded per session, for as long as the session lives: a model evicted from its cache while a request still
runs on it holds its memory and its files until that request ends, and the budgets count it until then.
Loaded models and text generators alike reach theirs through their session.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import onnxruntime as ort

from maas.runtime.process_memory import resident_bytes
from maas.runtime.weights import WeightLoading


@dataclass(slots=True)
class Footprint:
    weight_loading: WeightLoading
    # VmRSS just before the session opened: downloads done, their buffers handed back.
    resident_before: int
    # Temp-dir bytes kept allocated by the files the session maps (mapped weights, or weights of kernels
    # that do not prepack): deleted with their folder, freed only when the session goes.
    scratch_bytes: int
    # VmRSS growth over opening the session and warming it up; 0 until `settle_footprint`.
    resident_bytes: int = 0


_FOOTPRINTS: weakref.WeakKeyDictionary[ort.InferenceSession, Footprint] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def record_footprint(session: ort.InferenceSession, footprint: Footprint) -> None:
    with _LOCK:
        _FOOTPRINTS[session] = footprint


def footprint_of(session: ort.InferenceSession) -> Footprint | None:
    """The session's footprint; None for a session no verified load opened (a benchmark's, a test's)."""
    with _LOCK:
        return _FOOTPRINTS.get(session)


def settle_footprint(session: ort.InferenceSession) -> Footprint | None:
    """Measure what opening and warming up the session added to this process's resident memory.

    Taken after the warm-up: a mapped session's weight pages, and every session's arena, arrive with its
    first run, not with its creation."""
    footprint = footprint_of(session)
    if footprint is not None:
        footprint.resident_bytes = max(0, resident_bytes() - footprint.resident_before)
    return footprint


def session_memory_bytes(session: ort.InferenceSession, floor: int) -> int:
    """What the model cache budgets for a session: its measured growth, and never less than `floor` (the
    artifact bytes it was loaded from), which also stands in where nothing was measured."""
    footprint = footprint_of(session)
    return floor if footprint is None else max(floor, footprint.resident_bytes)
