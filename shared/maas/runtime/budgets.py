"""The budgets a load must fit before anything is downloaded: the function's temp space and its memory.

One place for every function that loads models (the inference service, the text generators' loader), so
Lambda never finds out for us: a `/tmp` filled half way, or a process killed for memory mid-load. A load
that does not fit is refused with the numbers (needed, available, in MB) and the template parameter to
raise; before refusing, cached models are evicted, least recently used first, when that makes enough room.
Decision 0022 gives the reasoning and the measurements behind each figure.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import onnxruntime as ort

from maas.config import (
    ENV_EPHEMERAL_STORAGE_MB,
    ENV_LAMBDA_MEMORY_MB,
    LAMBDA_MAX_EPHEMERAL_STORAGE_MB,
    LAMBDA_MAX_MEMORY_MB,
    Settings,
)
from maas.errors import InsufficientStorage, ModelTooLarge
from maas.registry.manifest import Manifest
from maas.runtime.cache import CachedModel, ModelCache, ModelKey
from maas.runtime.footprint import footprint_of
from maas.runtime.load_folders import remove_abandoned_load_folders
from maas.runtime.memory import release_freed_memory
from maas.runtime.process_memory import machine_memory_bytes, resident_bytes
from maas.runtime.session_options import SessionConfig
from maas.runtime.weights import (
    WeightLoading,
    graph_bytes,
    may_map,
    peak_resident_bytes,
    ruled_weight_loading,
    with_weight_loading,
)

MB = 1024 * 1024
# Temp space kept free beyond a model's own files: onnxruntime and the runtime write small files too.
DISK_HEADROOM_BYTES = 64 * MB
# Share of the function's memory no load may count on: a request's tensors and activations, and what the
# allocator keeps between them.
MEMORY_MARGIN_SHARE = 0.1

M = TypeVar("M", bound=CachedModel)


def _free_disk_bytes(directory: str) -> int:
    return shutil.disk_usage(directory).free


@dataclass(frozen=True, slots=True)
class MachineReadings:
    """Where the budgets read the machine. A test hands in fixed numbers, so a refusal does not depend on
    what the test process happens to hold."""

    resident_bytes: Callable[[], int] = resident_bytes
    machine_memory_bytes: Callable[[], int | None] = machine_memory_bytes
    free_disk_bytes: Callable[[str], int] = _free_disk_bytes
    temp_dir: Callable[[], str] = tempfile.gettempdir


@dataclass(frozen=True, slots=True)
class _Evictable:
    key: ModelKey
    memory_bytes: int
    scratch_bytes: int
    cache: ModelCache[Any]


@dataclass(slots=True)
class _TempSpace:
    directory: str
    free: int
    # MAAS_EPHEMERAL_STORAGE_MB (None: no size given), and the bytes the cached models' sessions keep
    # allocated in it.
    limit: int | None
    held: int
    needed: int
    freed: int = 0

    @property
    def available(self) -> int:
        free = self.free + self.freed
        return free if self.limit is None else min(free, self.limit - self.held + self.freed)

    def detail(self) -> str:
        free = f"{_mb(self.free + self.freed)} MB free in {self.directory}"
        if self.limit is None:
            return free
        return (
            f"{ENV_EPHEMERAL_STORAGE_MB}={_mb(self.limit)} less {_mb_up(self.held - self.freed)} MB that "
            f"cached models still hold there; {free}"
        )


@dataclass(slots=True)
class _Memory:
    # The function's memory, and where that figure came from.
    function: int
    source: str
    margin: int
    # What this process holds now: its resident memory, or its cached models' sizes where they say more.
    held: int
    needed: int = 0
    freed: int = 0

    @property
    def available(self) -> int:
        return self.function - self.margin - self.held + self.freed

    def detail(self) -> str:
        return (
            f"{self.source} less {_mb_up(self.held - self.freed)} MB this process holds and a margin of "
            f"{_mb_up(self.margin)} MB"
        )


# One load at a time per process, from its budget check until its session is open: two loads checked
# against the same free space and memory would each pass and together not fit. Lambda runs one request per
# environment; the local stack, which serves concurrently, is where two loads meet.
_ONE_LOAD_AT_A_TIME = threading.Lock()


class LoadBudget:
    """The budgets of one model cache's loads (one per function's cache), read from the settings and the
    machine at each load."""

    def __init__(self, settings: Settings, readings: MachineReadings | None = None) -> None:
        self.settings = settings
        self.readings = readings or MachineReadings()
        self._neighbours: list[tuple[ModelCache[Any], Callable[[Any], ort.InferenceSession]]] = []

    def share_with(self, cache: ModelCache[M], session_of: Callable[[M], ort.InferenceSession]) -> None:
        """Count `cache`, another cache of this function's process, as this budget's own: its models hold the
        same memory and /tmp, and a load may evict them (after its own cache's) to make room. The async and
        batch functions keep models and text generators in two caches."""
        self._neighbours.append((cache, session_of))

    @contextmanager
    def admitted(
        self,
        manifest: Manifest,
        config: SessionConfig,
        cache: ModelCache[M],
        session_of: Callable[[M], ort.InferenceSession],
    ) -> Iterator[SessionConfig]:
        """`admit`, and no other load in this process until the block (the load itself) ends."""
        with _ONE_LOAD_AT_A_TIME:
            yield self.admit(manifest, config, cache, session_of)

    def admit(
        self,
        manifest: Manifest,
        config: SessionConfig,
        cache: ModelCache[M],
        session_of: Callable[[M], ort.InferenceSession],
    ) -> SessionConfig:
        """`config` with the version's weight loading applied, once its graph files fit the temp space and
        its peak the memory; cached models are evicted first, least recently used first, when that makes
        the room.

        InsufficientStorage (507) or ModelTooLarge (503) otherwise, having evicted nothing."""
        # What a killed process left in the temp dir is not this load's to count against.
        remove_abandoned_load_folders(self.readings.temp_dir())
        evictable = [
            _Evictable(key, model.size_bytes, _scratch_bytes(sessions(model)), source)
            for source, sessions in [(cache, session_of), *self._neighbours]
            for key, model in source.entries()
        ]
        disk = self._temp_space(manifest, evictable)
        memory = self._memory(evictable)
        loading = self._weight_loading(manifest, config, memory, evictable)
        if memory is not None:
            memory.needed = peak_resident_bytes(manifest, loading)
        evicted: list[_Evictable] = []
        for entry in evictable:
            memory_short = memory is not None and memory.needed > memory.available
            disk_short = disk.needed > disk.available
            if memory_short or (disk_short and entry.scratch_bytes > 0):
                evicted.append(entry)
                disk.freed += entry.scratch_bytes
                if memory is not None:
                    memory.freed += entry.memory_bytes
        if disk.needed > disk.available:
            raise self._no_temp_space(manifest, disk)
        if memory is not None and memory.needed > memory.available:
            raise self._no_memory(manifest, loading, memory)
        if evicted:
            for entry in evicted:
                entry.cache.discard(*entry.key)
            # The evicted sessions' arenas and buffers, freed to the allocator, go back before the load.
            release_freed_memory()
        return with_weight_loading(config, loading)

    def _temp_space(self, manifest: Manifest, evictable: list[_Evictable]) -> _TempSpace:
        """The temp space a load may fill: the disk's free space, and within MAAS_EPHEMERAL_STORAGE_MB what
        the cached models' mapped files leave of it. Per cache, as each Lambda function has its own /tmp,
        while `make serve` runs every function in one process over one disk."""
        directory = self.readings.temp_dir()
        return _TempSpace(
            directory=directory,
            free=self.readings.free_disk_bytes(directory),
            limit=self.settings.ephemeral_storage_bytes,
            held=sum(entry.scratch_bytes for entry in evictable),
            needed=graph_bytes(manifest) + DISK_HEADROOM_BYTES,
        )

    def _memory(self, evictable: list[_Evictable]) -> _Memory | None:
        """The memory a load may take with every cached model kept: the function's less what this process
        holds (cached models included) and the margin. None: the memory is unknown (no Lambda setting,
        cgroup or /proc), so there is no budget to fit."""
        function = self.settings.function_memory_bytes
        source = f"{ENV_LAMBDA_MEMORY_MB}={_mb(function)}"
        if function is None:
            function = self.readings.machine_memory_bytes()
            source = f"this machine's {_mb(function)} MB"
        if function is None:
            return None
        cached = sum(entry.memory_bytes for entry in evictable)
        return _Memory(
            function=function,
            source=source,
            margin=math.ceil(function * MEMORY_MARGIN_SHARE),
            held=max(self.readings.resident_bytes(), cached),
        )

    def _weight_loading(
        self, manifest: Manifest, config: SessionConfig, memory: _Memory | None, evictable: list[_Evictable]
    ) -> WeightLoading:
        """The manifest's choice or the size rule; and mapped, not refused, when prepacking would not fit
        the memory even with every cached model evicted, but weights that need no copy might."""
        loading = ruled_weight_loading(manifest, config, self.settings.mapped_weights_bytes)
        if loading == "mapped" or manifest.weight_loading is not None or not may_map(manifest, config):
            return loading
        if memory is None:
            return loading
        at_most = memory.available + sum(entry.memory_bytes for entry in evictable)
        return "mapped" if peak_resident_bytes(manifest, "prepacked") > at_most else loading

    def _no_temp_space(self, manifest: Manifest, disk: _TempSpace) -> InsufficientStorage:
        return InsufficientStorage(
            f"model '{manifest.name}' v{manifest.version}: expected {_mb_up(disk.needed)} MB of temp space "
            f"for its graph files ({_mb_up(graph_bytes(manifest))} MB) and {_mb(DISK_HEADROOM_BYTES)} MB "
            f"of headroom, got {_mb(disk.available)} MB available ({disk.detail()}); raise the template "
            f"parameter EphemeralStorageSize (up to {LAMBDA_MAX_EPHEMERAL_STORAGE_MB} MB)"
        )

    def _no_memory(self, manifest: Manifest, loading: WeightLoading, memory: _Memory) -> ModelTooLarge:
        return ModelTooLarge(
            f"model '{manifest.name}' v{manifest.version}: expected {_mb_up(memory.needed)} MB of memory "
            f"for its weights, held {loading}, got {_mb(memory.available)} MB available ({memory.detail()}); "
            f"raise the function's memory, template parameter {self.settings.memory_parameter} (up to "
            f"{LAMBDA_MAX_MEMORY_MB} MB)"
        )


def _scratch_bytes(session: ort.InferenceSession) -> int:
    footprint = footprint_of(session)
    return 0 if footprint is None else footprint.scratch_bytes


def _mb(value: int | None) -> int:
    """Whole MB, rounded down: what is available is never overstated."""
    return max(0, value or 0) // MB


def _mb_up(value: int) -> int:
    """Whole MB, rounded up: what is needed is never understated."""
    return -(-max(0, value) // MB)
