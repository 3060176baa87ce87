"""SnapStart runtime hooks: what a function does before Lambda snapshots it, and after a copy resumes.

With SnapStart on (template parameter SnapStart, decision 0023) Lambda initializes a function once, when a
version is published, snapshots the microVM, and resumes every new execution environment from that
snapshot. So whatever init leaves in memory is shared by every copy, and whatever it spent is spent once:

    before the snapshot   every online module imported (lazy imports included), the WarmModels versions
                          loaded into the cache and run once (the load's warm-up inference), AWS clients made
    after a restore       `random` and numpy's global generator reseeded from the OS (the canary split draws
                          from `random`: copies of one snapshot would otherwise draw the same sequence),
                          new AWS clients under every holder (fresh credentials, no connection from the
                          snapshot), and every alias resolution expired, so an alias moved while the snapshot
                          sat in Lambda's cache is seen on the first request

The generation sampler needs nothing: it seeds `np.random.default_rng(seed)` per request, which without a
seed draws fresh entropy from the OS each time.

Hooks are registered only where they can run: when Lambda initializes for a snapshot
(AWS_LAMBDA_INITIALIZATION_TYPE=snap-start) and `snapshot_restore_py` (which the Python runtime provides)
imports. Everywhere else (local runs, tests, a function without SnapStart) registering is a no-op.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import random
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from maas.aws_clients import renew_clients
from maas.observability import logger

if TYPE_CHECKING:
    from maas.service.inference import InferenceService

ENV_INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
SNAP_START = "snap-start"
# What a function may import lazily on a first request; never maas.training, maas.local or maas.cli.
ONLINE_PACKAGES = (
    "maas.api",
    "maas.events",
    "maas.service",
    "maas.protocol",
    "maas.explain",
    "maas.generation",
    "maas.runtime",
    "maas.registry",
)


class HookRegistry(Protocol):
    """The two registration calls of `snapshot_restore_py`."""

    def register_before_snapshot(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def register_after_restore(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


_lock = threading.Lock()
# The registries holding the process-wide hooks: they go in once, however many apps a process builds.
_holding_process_hooks: list[HookRegistry] = []


def snapshot_hook_registry(environ: Mapping[str, str] = os.environ) -> HookRegistry | None:
    """`snapshot_restore_py` when this process is being initialized for a snapshot; None otherwise."""
    if environ.get(ENV_INITIALIZATION_TYPE) != SNAP_START:
        return None
    try:
        # By name: the runtime provides it, and a type checker need not know it.
        registry: HookRegistry = importlib.import_module("snapshot_restore_py")
    except ImportError:
        # A snapshot is being taken without the hooks: no warm-up before it, and no reseeding or new
        # clients after each restore. Say so once, loudly, rather than serve copies that share a state.
        logger.warning(
            "snapshot: snapshot_restore_py is not importable; SnapStart hooks are not registered",
            extra={"sys_path_has_var_runtime": "/var/runtime" in sys.path},
        )
        return None
    return registry


def register_snapshot_hooks(
    warm_up: Callable[[], object] | None = None,
    *,
    packages: Sequence[str] = ONLINE_PACKAGES,
    registry: HookRegistry | None = None,
) -> bool:
    """Register the process's hooks (once: importing `packages` before the snapshot, restoring uniqueness
    after), and `warm_up` to run before the snapshot; False, registering nothing, where no snapshot is
    taken."""
    registry = registry or snapshot_hook_registry()
    if registry is None:
        return False
    with _lock:
        if not any(held is registry for held in _holding_process_hooks):
            registry.register_before_snapshot(import_modules, tuple(packages))
            registry.register_after_restore(restore_uniqueness)
            _holding_process_hooks.append(registry)
    if warm_up is not None:
        registry.register_before_snapshot(warm_up)
    return True


def run_before_snapshot() -> int:
    """Every before-snapshot hook, last registered first, as Lambda's Python runtime runs them; the count.
    For a runtime loop of our own (maas.apps.streaming_runtime); the managed loop runs them itself."""
    hooks = _hook_list("get_before_snapshot")
    ran = 0
    while hooks:
        func, args, kwargs = hooks.pop()
        func(*args, **kwargs)
        ran += 1
    return ran


def run_after_restore() -> int:
    """Every after-restore hook, in the order registered, as Lambda's Python runtime runs them."""
    hooks = _hook_list("get_after_restore")
    for func, args, kwargs in hooks:
        func(*args, **kwargs)
    return len(hooks)


def _hook_list(getter: str) -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    try:
        module = importlib.import_module("snapshot_restore_py")
    except ImportError:
        return []
    hooks: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = getattr(module, getter)()
    return hooks


def warm_inference(service: InferenceService) -> Callable[[], dict[str, Any]]:
    """The infer function's scheduled warm-up (maas.events.infer_events) over `service`: each WarmModels
    version loaded into its cache, and run once by the load's own warm-up."""

    def warm_up() -> dict[str, Any]:
        # Imported here: the queue functions need the warm-up only before a snapshot.
        from maas.events.infer_events import InferEvents

        return InferEvents(service).warm_up()

    return warm_up


def import_modules(packages: Sequence[str] = ONLINE_PACKAGES) -> int:
    """Every module of `packages`, so no first request after a restore imports one; the count."""
    imported = 0
    for package_name in packages:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            importlib.import_module(module.name)
            imported += 1
    built = build_deferred_models(packages)
    logger.info("snapshot: modules imported", extra={"modules": imported, "models_built": built})
    return imported


def build_deferred_models(packages: Sequence[str] = ONLINE_PACKAGES) -> int:
    """Build the wire types whose pydantic build waits for their route's first use (defer_build keeps them
    off a plain cold start's import path); in a snapshot, that first use would otherwise pay it. The count."""
    from pydantic import BaseModel

    prefixes = tuple(f"{package}." for package in packages)
    built = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(prefixes):
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == name
                and not value.__pydantic_complete__
            ):
                value.model_rebuild(force=True)
                built += 1
    return built


def restore_uniqueness() -> None:
    """What must differ between copies restored from one snapshot: random state, clients, resolutions."""
    # No argument: seeded from os.urandom, which Lambda reseeds in each restored copy.
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    clients = renew_clients()
    # Imported here: maas.runtime brings onnxruntime and numpy, which the registry function never loads,
    # and pydantic, which the queue functions must not load before Powertools' batch types.
    from maas.runtime.cache import expire_every_resolver

    expired = expire_every_resolver()
    logger.info(
        "restored from a snapshot", extra={"clients_renewed": clients, "resolutions_expired": expired}
    )
