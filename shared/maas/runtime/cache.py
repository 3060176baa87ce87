"""The process-wide model cache: LRU by bytes, one lock per key, and reference resolution with a TTL.

Versions are immutable and their numbers are never given twice, so a loaded (name, version) holds the right
weights for as long as the version exists. References that can move (aliases, `latest`, the default) are
re-resolved after `alias_ttl_seconds`; a pinned version is re-checked then too (one HEAD of its manifest),
so a deleted version answers 404, and leaves the cache, within one TTL. Within the TTL no request touches
storage. A copy restored from a SnapStart snapshot may wake long after its entries were made, so
`expire_every_resolver` lets its first request resolve each reference again.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from maas.errors import NotFound, Unavailable
from maas.registry.references import ModelRef
from maas.registry.store import ResolvedTarget

ModelKey = tuple[str, int]


class CachedModel(Protocol):
    """What the cache budgets: a loaded model's bytes (a LoadedModel, a text generator)."""

    @property
    def size_bytes(self) -> int: ...


M = TypeVar("M", bound=CachedModel)


class ModelCache(Generic[M]):
    def __init__(self, loader: Callable[[str, int], M], capacity_bytes: int) -> None:
        self._loader = loader
        self._capacity = capacity_bytes
        self._models: OrderedDict[ModelKey, M] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[ModelKey, threading.Lock] = {}
        self.loads = 0

    def get(self, name: str, version: int) -> M:
        key = (name, version)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # Loading happens outside the cache lock so other models keep serving; the per-key lock makes
        # concurrent requests for the same model wait for one load instead of loading it twice.
        with key_lock:
            with self._lock:
                model = self._models.get(key)
            if model is not None:
                return model
            try:
                model = self._loader(name, version)
            finally:
                with self._lock:
                    self._key_locks.pop(key, None)
            with self._lock:
                self.loads += 1
                self._models[key] = model
                self._evict_over_capacity(keep=key)
            return model

    def discard(self, name: str, version: int) -> None:
        """Forget a model (its version was deleted); requests already holding it finish with it."""
        with self._lock:
            self._models.pop((name, version), None)

    def peek(self, name: str, version: int) -> M | None:
        with self._lock:
            return self._models.get((name, version))

    def loaded_keys(self) -> list[ModelKey]:
        with self._lock:
            return list(self._models)

    def entries(self) -> list[tuple[ModelKey, M]]:
        """The cached models, least recently used first: the order a budget evicts them in."""
        with self._lock:
            return list(self._models.items())

    def _evict_over_capacity(self, keep: ModelKey) -> None:
        # A single model larger than the budget is still kept: serving it beats refusing to.
        total = sum(m.size_bytes for m in self._models.values())
        for key in list(self._models):
            if total <= self._capacity:
                break
            if key == keep:
                continue
            total -= self._models.pop(key).size_bytes


@dataclass(frozen=True, slots=True)
class _Resolution:
    target: ResolvedTarget | None
    expires_at: float
    # Set for a reference that did not resolve: answered again without asking storage until it expires.
    missing: NotFound | None = None


class VersionResolver:
    """Caches reference -> target (version and any canary split) for `ttl` seconds.

    A movable reference is resolved again when its entry expires. A pinned one is checked again: its target
    cannot change, but the version can be deleted, and then `forget` drops it from the model cache. A pinned
    check that fails for a storage error keeps serving the version checked before, since only a delete could
    change the answer; it is retried after `negative_ttl_seconds`.

    Misses are cached briefly too, so a client hammering an unknown name costs storage one lookup per
    `negative_ttl_seconds`, not one per request. Entries are bounded, since clients choose the keys.
    """

    def __init__(
        self,
        resolve: Callable[[ModelRef], ResolvedTarget],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        negative_ttl_seconds: float = 5.0,
        max_entries: int = 4096,
        forget: Callable[[str, int], None] | None = None,
    ) -> None:
        self._resolve = resolve
        self._ttl = ttl_seconds
        self._negative_ttl = min(negative_ttl_seconds, ttl_seconds)
        self._clock = clock
        self._max_entries = max_entries
        self._forget = forget
        self._entries: OrderedDict[ModelRef, _Resolution] = OrderedDict()
        self._lock = threading.Lock()
        _resolvers.add(self)

    def expire_all(self) -> int:
        """Every entry expires now, so each reference is resolved again on its next use; the number expired.
        The answers are kept for what expired entries are still good for (a pinned version served through
        a storage outage)."""
        with self._lock:
            for ref, entry in self._entries.items():
                self._entries[ref] = replace(entry, expires_at=-math.inf)
            return len(self._entries)

    def resolve(self, ref: ModelRef) -> ResolvedTarget:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(ref)
        if entry is not None and entry.expires_at > now:
            if entry.missing is not None:
                raise entry.missing
            assert entry.target is not None
            return entry.target
        try:
            target = self._resolve(ref)
        except NotFound as missing:
            self._remember(ref, _Resolution(None, now + self._negative_ttl, missing))
            if ref.version is not None and self._forget is not None:
                self._forget(ref.name, ref.version)
            raise
        except Unavailable:
            if entry is None or entry.target is None or not ref.is_pinned:
                raise
            self._remember(ref, _Resolution(entry.target, now + self._negative_ttl))
            return entry.target
        self._remember(ref, _Resolution(target, now + self._ttl))
        return target

    def _remember(self, ref: ModelRef, resolution: _Resolution) -> None:
        with self._lock:
            self._entries[ref] = resolution
            self._entries.move_to_end(ref)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


# Every resolver alive in the process: a restore from a snapshot expires them all, whoever holds them.
_resolvers: weakref.WeakSet[VersionResolver] = weakref.WeakSet()


def expire_every_resolver() -> int:
    """`expire_all` on every resolver in the process; the number of entries expired."""
    return sum(resolver.expire_all() for resolver in list(_resolvers))
