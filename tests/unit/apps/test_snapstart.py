"""Registering the SnapStart hooks: only where Lambda initializes for a snapshot and the runtime's module is
there, the process-wide hooks once however many apps a process builds, and restoring uniqueness reseeds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maas.apps.snapstart import (
    ENV_INITIALIZATION_TYPE,
    SNAP_START,
    register_snapshot_hooks,
    restore_uniqueness,
    snapshot_hook_registry,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"


class Recorded:
    """A hook registry that keeps what is registered with it."""

    def __init__(self) -> None:
        self.before: list[Callable[..., Any]] = []
        self.after: list[Callable[..., Any]] = []

    def register_before_snapshot(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.before.append(func)
        return func

    def register_after_restore(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.after.append(func)
        return func


def test_nothing_is_registered_outside_a_snapshot_init(monkeypatch: pytest.MonkeyPatch) -> None:
    assert snapshot_hook_registry({ENV_INITIALIZATION_TYPE: "on-demand"}) is None
    monkeypatch.delenv(ENV_INITIALIZATION_TYPE, raising=False)
    assert snapshot_hook_registry() is None
    assert register_snapshot_hooks(lambda: None) is False


def test_without_the_runtimes_module_registering_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # what an import of a missing module sees
    assert snapshot_hook_registry({ENV_INITIALIZATION_TYPE: SNAP_START}) is None


def test_the_process_hooks_go_in_once_and_each_apps_warm_up_with_them() -> None:
    registry = Recorded()
    warm_ups = [lambda: "a", lambda: "b"]

    assert all(register_snapshot_hooks(warm_up, registry=registry) for warm_up in warm_ups)

    assert registry.before[1:] == warm_ups
    assert registry.after == [restore_uniqueness]


def test_restoring_uniqueness_reseeds_random() -> None:
    random.seed(7)
    snapshot = random.getstate()
    restore_uniqueness()
    assert random.getstate() != snapshot


def test_before_the_snapshot_the_deferred_wire_types_are_built() -> None:
    # A fresh process: built on their route's first use on a plain cold start, they must be built in a
    # snapshot, or the first request after every restore pays the build.
    probe = textwrap.dedent(
        """
        from maas.protocol import v2_types
        deferred = [v2_types.ModelMetadataResponse, v2_types.ModelListResponse]
        before = [model.__pydantic_complete__ for model in deferred]
        from maas.apps.snapstart import import_modules
        import_modules(("maas.protocol",))
        print(before, [model.__pydantic_complete__ for model in deferred])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SHARED)}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )

    assert result.stdout.split("\n")[-2] == "[False, False] [True, True]"
