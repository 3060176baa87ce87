"""Our runtime loop ends a SnapStart init as Lambda's managed Python runtime does: the before-snapshot hooks,
then GET /runtime/restore/next while Lambda snapshots, then the after-restore hooks in each restored copy;
a failing hook is reported as the managed runtime reports it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator

import pytest

from maas.apps.runtime_api import RuntimeApiClient
from maas.apps.streaming_runtime import snapshot_and_restore
from tests.support.runtime_api import RuntimeApiStandIn, runtime_api_stand_in

# By name, as the runtime loads it: it ships no type information.
snapshot_restore_py = importlib.import_module("snapshot_restore_py")


@pytest.fixture
def stand_in() -> Iterator[RuntimeApiStandIn]:
    with runtime_api_stand_in() as running:
        yield running


@pytest.fixture(autouse=True)
def empty_hook_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's hooks only: the runtime's hook lists are module globals."""
    monkeypatch.setattr(snapshot_restore_py, "_before_snapshot_registry", [])
    monkeypatch.setattr(snapshot_restore_py, "_after_restore_registry", [])


def test_before_hooks_run_before_the_snapshot_and_after_hooks_in_the_restored_copy(
    stand_in: RuntimeApiStandIn,
) -> None:
    seen: list[tuple[str, int]] = []
    # Given two hooks of each kind, recording how many times the runtime had waited for the snapshot
    for name in ("first", "second"):
        snapshot_restore_py.register_before_snapshot(
            lambda n=name: seen.append((f"before {n}", stand_in.restore_requests))
        )
        snapshot_restore_py.register_after_restore(
            lambda n=name: seen.append((f"after {n}", stand_in.restore_requests))
        )

    # When the runtime finishes a SnapStart init
    failed = snapshot_and_restore(RuntimeApiClient(stand_in.address))

    # Then the before hooks ran last-registered first, before the one wait, and the after hooks in order
    assert failed is None
    assert seen == [("before second", 0), ("before first", 0), ("after first", 1), ("after second", 1)]
    assert stand_in.posted == []


def test_a_failing_after_restore_hook_is_a_restore_error(stand_in: RuntimeApiStandIn) -> None:
    def broken() -> None:
        raise RuntimeError("no fresh client")

    snapshot_restore_py.register_after_restore(broken)

    failed = snapshot_and_restore(RuntimeApiClient(stand_in.address))

    assert failed == 65
    assert stand_in.wait_for_posts(1)
    (posted,) = stand_in.posted
    assert posted.path == "/2018-06-01/runtime/restore/error"
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "Runtime.AfterRestoreError"
    assert json.loads(posted.body)["errorMessage"] == "no fresh client"


def test_a_failing_before_snapshot_hook_is_an_init_error_and_no_snapshot_is_taken(
    stand_in: RuntimeApiStandIn,
) -> None:
    def broken() -> None:
        raise RuntimeError("model did not load")

    snapshot_restore_py.register_before_snapshot(broken)

    failed = snapshot_and_restore(RuntimeApiClient(stand_in.address))

    assert failed == 64
    assert stand_in.restore_requests == 0
    (posted,) = stand_in.posted
    assert posted.path == "/2018-06-01/runtime/init/error"
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "Runtime.BeforeSnapshotError"
