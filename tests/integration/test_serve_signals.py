"""`maas serve` stops on SIGTERM whichever of its threads the kernel hands the signal to. Python runs a
handler only on the main thread, when it next runs bytecode: a main thread waiting with no timeout never
did, and a `make serve` hit by SIGTERM under load kept serving."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

import pytest

from maas.training import TrainedModel
from tests.integration.store_process import serve_seeded_folder

SYS_TGKILL = 234  # x86_64; aarch64 numbers it 131


def _tgkill(pid: int, thread_id: int, signum: int) -> None:
    number = SYS_TGKILL if os.uname().machine == "x86_64" else 131
    if ctypes.CDLL(None, use_errno=True).syscall(number, pid, thread_id, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


@pytest.mark.skipif(sys.platform != "linux", reason="sends the signal to one thread through Linux's tgkill")
def test_sigterm_delivered_to_a_worker_thread_stops_serve(
    isolated_env: pytest.MonkeyPatch, seed_model: TrainedModel, tmp_path: Path
) -> None:
    serving, _ = serve_seeded_folder(tmp_path / "data", seed_model)
    try:
        workers = [int(task) for task in os.listdir(f"/proc/{serving.pid}/task") if int(task) != serving.pid]
        assert workers, "expected the stack's threads"

        _tgkill(serving.pid, workers[-1], signal.SIGTERM)

        remaining, _ = serving.communicate(timeout=60)
        assert serving.returncode == 0
        assert "stopped" in remaining
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait(timeout=30)
