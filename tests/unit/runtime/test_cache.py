"""The model cache on its own: least recently used out first, counted in bytes; one load per model however
many requests ask at once; and the reference resolver's TTLs and bound.

The cached models are real LoadedModels over one tiny onnxruntime session; what the cache budgets is the
size their manifests declare, so each test sets it. The end-to-end paths (a real registry behind the
loader and the resolver) are in tests/unit/runtime/test_runtime.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import onnxruntime as ort
import pytest

from maas.errors import NotFound, Unavailable
from maas.registry import ModelRef
from maas.registry.manifest import MODEL_FILE, Artifact, sha256_hex
from maas.registry.store import ResolvedTarget
from maas.runtime import LoadedModel, ModelCache, VersionResolver
from tests.support.models import batch_sum_model

FILES, DRAFT = batch_sum_model()
SESSION = ort.InferenceSession(FILES[MODEL_FILE], providers=["CPUExecutionProvider"])
# Long enough for a thread that should not be blocked; a failing test waits this long, a passing one not.
JOIN_SECONDS = 10
# Time for a second request to reach the per-key lock while the first one's load is held.
SETTLE_SECONDS = 0.1

T = TypeVar("T")


def loaded(name: str, version: int, size_bytes: int) -> LoadedModel:
    artifact = Artifact(path=MODEL_FILE, sha256=sha256_hex(FILES[MODEL_FILE]), bytes=size_bytes)
    return LoadedModel(DRAFT.commit(name, version, [artifact]), SESSION, ("CPUExecutionProvider",))


class Loader:
    """Loads each (name, version) at the size it is told, recording every call; `hold` keeps a load of
    that name waiting until `release`."""

    def __init__(self, sizes: dict[str, int] | None = None, default_size: int = 100) -> None:
        self.sizes = sizes or {}
        self.default_size = default_size
        self.calls: list[tuple[str, int]] = []
        self.failing: set[str] = set()
        self.hold: str | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, name: str, version: int) -> LoadedModel:
        self.calls.append((name, version))
        if name == self.hold:
            self.holding.set()
            assert self.release.wait(JOIN_SECONDS)
        if name in self.failing:
            raise Unavailable(f"model '{name}' v{version}: storage unreachable")
        return loaded(name, version, self.sizes.get(name, self.default_size))


def in_thread(work: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    return thread, results


def test_a_loaded_model_is_served_from_memory() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity_bytes=1000)

    first = cache.get("a", 1)

    assert cache.get("a", 1) is first
    assert cache.peek("a", 1) is first
    assert loader.calls == [("a", 1)]
    assert cache.loads == 1


def test_two_concurrent_gets_of_one_model_load_it_once() -> None:
    loader = Loader()
    loader.hold = "a"
    cache = ModelCache(loader, capacity_bytes=1000)

    first, first_result = in_thread(lambda: cache.get("a", 1))
    assert loader.holding.wait(JOIN_SECONDS)
    second, second_result = in_thread(lambda: cache.get("a", 1))
    second.join(SETTLE_SECONDS)
    loader.release.set()
    first.join(JOIN_SECONDS)
    second.join(JOIN_SECONDS)

    assert loader.calls == [("a", 1)]
    assert first_result == second_result
    assert first_result[0] is second_result[0]
    assert cache.loads == 1


def test_other_models_keep_serving_while_one_loads() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity_bytes=1000)
    ready = cache.get("ready", 1)
    loader.hold = "slow"

    slow, _ = in_thread(lambda: cache.get("slow", 1))
    assert loader.holding.wait(JOIN_SECONDS)
    other, other_result = in_thread(lambda: (cache.get("ready", 1), cache.get("other", 1)))
    other.join(JOIN_SECONDS)
    finished_while_slow_loads = not other.is_alive()
    loader.release.set()
    slow.join(JOIN_SECONDS)

    assert finished_while_slow_loads
    assert other_result[0][0] is ready


def test_the_least_recently_used_model_leaves_first() -> None:
    cache = ModelCache(Loader(default_size=100), capacity_bytes=250)

    for version in (1, 2, 1, 3):
        cache.get("m", version)

    assert cache.loaded_keys() == [("m", 1), ("m", 3)]
    cache.get("m", 2)
    assert cache.loaded_keys() == [("m", 3), ("m", 2)]
    assert cache.loads == 4


def test_the_budget_counts_bytes_not_models() -> None:
    loader = Loader(sizes={"big": 90, "small-1": 40, "small-2": 40})
    cache = ModelCache(loader, capacity_bytes=100)

    cache.get("small-1", 1)
    cache.get("small-2", 1)
    assert cache.loaded_keys() == [("small-1", 1), ("small-2", 1)]
    # 170 bytes: both small models go, however many it takes to fit.
    cache.get("big", 1)
    assert cache.loaded_keys() == [("big", 1)]


def test_a_model_bigger_than_the_whole_budget_is_still_kept_until_another_arrives() -> None:
    loader = Loader(sizes={"huge": 500, "bigger": 600})
    cache = ModelCache(loader, capacity_bytes=10)

    huge = cache.get("huge", 1)

    assert cache.loaded_keys() == [("huge", 1)]
    assert cache.get("huge", 1) is huge
    cache.get("bigger", 1)
    assert cache.loaded_keys() == [("bigger", 1)]
    assert loader.calls == [("huge", 1), ("bigger", 1)]


def test_peeking_neither_loads_nor_counts_as_a_use() -> None:
    loader = Loader(default_size=100)
    cache = ModelCache(loader, capacity_bytes=200)

    assert cache.peek("a", 1) is None
    cache.get("a", 1)
    cache.get("b", 1)
    assert cache.peek("a", 1) is not None
    cache.get("c", 1)

    assert cache.loaded_keys() == [("b", 1), ("c", 1)]
    assert loader.calls == [("a", 1), ("b", 1), ("c", 1)]


def test_a_discarded_model_is_loaded_again_while_requests_holding_it_finish_with_it() -> None:
    loader = Loader()
    cache = ModelCache(loader, capacity_bytes=1000)
    held = cache.get("a", 1)

    cache.discard("a", 1)
    cache.discard("never-loaded", 7)

    assert cache.peek("a", 1) is None
    assert cache.loaded_keys() == []
    assert held.run({"input": np.ones((1, 10), np.float32)}, ["total"])[0].tolist() == [[10.0]]
    assert cache.get("a", 1) is not held
    assert cache.loads == 2


def test_a_failed_load_caches_nothing_and_the_next_request_tries_again() -> None:
    loader = Loader()
    loader.failing.add("a")
    cache = ModelCache(loader, capacity_bytes=1000)

    with pytest.raises(Unavailable, match="storage unreachable"):
        cache.get("a", 1)
    assert cache.loaded_keys() == []
    assert cache.loads == 0

    loader.failing.clear()
    cache.get("a", 1)
    assert loader.calls == [("a", 1), ("a", 1)]
    assert cache.loads == 1


class Targets:
    """Where each reference points, answered as a registry would; every question is recorded."""

    def __init__(self, versions: dict[ModelRef, int]) -> None:
        self.versions = versions
        self.asked: list[ModelRef] = []

    def __call__(self, ref: ModelRef) -> ResolvedTarget:
        self.asked.append(ref)
        if ref not in self.versions:
            raise NotFound(f"model '{ref}': not found")
        return ResolvedTarget(self.versions[ref])


PRODUCTION = ModelRef("m", alias="production")


def test_an_alias_is_answered_from_memory_until_its_ttl_has_passed() -> None:
    targets = Targets({PRODUCTION: 1})
    now = [0.0]
    resolver = VersionResolver(targets, ttl_seconds=30, clock=lambda: now[0])

    assert resolver.resolve(PRODUCTION).version == 1
    targets.versions[PRODUCTION] = 2
    now[0] = 29.9
    assert resolver.resolve(PRODUCTION).version == 1
    now[0] = 30.0
    assert resolver.resolve(PRODUCTION).version == 2
    assert targets.asked == [PRODUCTION, PRODUCTION]


def test_a_miss_is_remembered_for_the_negative_ttl_which_never_outlasts_the_ttl() -> None:
    unknown = ModelRef("unknown")
    targets = Targets({})
    now = [0.0]
    forgotten: list[tuple[str, int]] = []
    resolver = VersionResolver(
        targets,
        ttl_seconds=2,
        clock=lambda: now[0],
        negative_ttl_seconds=5,
        forget=lambda name, version: forgotten.append((name, version)),
    )

    for now[0] in (0.0, 1.9):
        with pytest.raises(NotFound, match="model 'unknown': not found"):
            resolver.resolve(unknown)
    assert targets.asked == [unknown]
    now[0] = 2.0
    with pytest.raises(NotFound):
        resolver.resolve(unknown)
    assert targets.asked == [unknown, unknown]
    # Only a pinned version that vanished has a model to drop from the cache.
    assert forgotten == []


def test_the_resolver_keeps_at_most_max_entries_references_dropping_the_oldest() -> None:
    refs = [ModelRef("m", alias=f"alias-{index}") for index in range(3)]
    targets = Targets(dict.fromkeys(refs, 1))
    resolver = VersionResolver(targets, ttl_seconds=30, clock=lambda: 0.0, max_entries=2)

    for ref in refs:
        resolver.resolve(ref)
    resolver.resolve(refs[2])
    resolver.resolve(refs[0])

    assert targets.asked == [*refs, refs[0]]
