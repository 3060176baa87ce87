"""One stack per data folder: the lock a stack holds from before its store starts until it has stopped
refuses a second stack and `maas serve --reset` even while the first is still seeding; and a descriptor left
by a stack that died never blocks the folder, even when its process id now belongs to another process."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from maas.local.data_folder import StackDescriptor, running_stack, write_descriptor
from maas.local.ports import STORE_PORT_FILE, DataFolderInUse
from maas.local.stack import LocalStack, Seeder
from maas.registry import Manifest, ModelRegistry
from tests.integration.store_process import run_maas
from tests.support.registry import publish

WAIT_SECONDS = 60


def kept_stack(data_dir: Path, seeder: Seeder | None = None) -> LocalStack:
    return LocalStack(port=0, embedded=True, data_dir=data_dir, seeder=seeder)


class SeedingStack:
    """A stack on `data_dir` started in a thread whose seeder waits until `finish()`: a stack caught
    between its store's start and its descriptor, as a first `make serve` is while it trains."""

    def __init__(self, data_dir: Path) -> None:
        self.seeding = threading.Event()
        self._release = threading.Event()
        self.stack = kept_stack(data_dir, seeder=self._seed)
        self._thread = threading.Thread(target=self.stack.start)
        self._thread.start()
        assert self.seeding.wait(WAIT_SECONDS), "the stack never reached its seeder"

    def _seed(self, registry: ModelRegistry) -> Sequence[Manifest]:
        publish(registry, b"seeded", name="seeded")
        self.seeding.set()
        self._release.wait(WAIT_SECONDS)
        return []

    def finish(self) -> None:
        """Let the seeding end and the stack serve."""
        self._release.set()
        self._thread.join(WAIT_SECONDS)


@pytest.fixture
def seeding_stack(isolated_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SeedingStack]:
    seeding = SeedingStack(tmp_path / "data")
    try:
        yield seeding
    finally:
        seeding.finish()
        seeding.stack.close()


def test_a_second_stack_is_refused_while_the_first_is_still_seeding(
    seeding_stack: SeedingStack, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    remembered = (data_dir / STORE_PORT_FILE).read_text()
    assert running_stack(data_dir) is None  # no descriptor yet: it does not serve

    with pytest.raises(DataFolderInUse) as refused:
        kept_stack(data_dir).start()

    assert str(data_dir) in refused.value.message and "\n" not in refused.value.message
    assert (data_dir / STORE_PORT_FILE).read_text() == remembered
    seeding_stack.finish()
    assert seeding_stack.stack.registry.versions("seeded") == [1]


def test_reset_is_refused_while_a_stack_is_still_seeding(seeding_stack: SeedingStack, tmp_path: Path) -> None:
    completed = run_maas("serve", "--reset", data_dir=tmp_path / "data")

    assert completed.returncode == 1, completed.stdout
    assert completed.stderr.count("\n") == 1 and "stop it first" in completed.stderr
    seeding_stack.finish()
    assert seeding_stack.stack.registry.versions("seeded") == [1]


def test_a_descriptor_whose_pid_now_belongs_to_another_process_blocks_nothing(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with kept_stack(data_dir):
        left = StackDescriptor.from_json((data_dir / "stack.json").read_text())
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # What a stack killed with SIGKILL leaves, once the system has given its pid to another process.
        write_descriptor(data_dir, dataclasses.replace(left, pid=unrelated.pid))

        assert running_stack(data_dir) is None
        with kept_stack(data_dir) as stack:
            found = running_stack(data_dir)
            assert found is not None and found.pid == os.getpid() and found.url == stack.url
    finally:
        unrelated.kill()
        unrelated.wait()
