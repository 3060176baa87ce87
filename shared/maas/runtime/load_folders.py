"""The private folders loads download into, and the ones a killed process left behind.

Lambda keeps /tmp for the life of an execution environment, across a timeout or a crash that restarts the
runtime process. A process killed mid-download (a timeout on a slow cold start, an out-of-memory kill)
leaves its folder behind: gigabytes that the next load's temp-space budget would count as used, so every
later load could be refused for want of /tmp until Lambda recycled the environment.

So each folder carries a lock file, held with flock(2) while its load runs. The kernel drops the lock when
its process dies however it dies, and a pid cannot say as much (Lambda's runtime restarts with small,
reused pids). Before a load measures the temp space, every folder whose lock is free is removed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOAD_FOLDER_PREFIX = "maas-"
LOCK_FILE = ".maas-load.lock"
# Locked under this name first and renamed into place, so a sweep never finds the lock file unlocked.
_UNLOCKED_LOCK_FILE = ".maas-load.lock.new"


@contextmanager
def private_load_folder(prefix: str) -> Iterator[Path]:
    """A fresh folder in the temp dir named `prefix<random>` (which starts with LOAD_FOLDER_PREFIX), locked
    for as long as the block runs and removed after it."""
    if not prefix.startswith(LOAD_FOLDER_PREFIX):
        raise ValueError(f"load folder prefix {prefix!r}: expected it to start with {LOAD_FOLDER_PREFIX!r}")
    folder = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    lock: int | None = None
    try:
        lock = os.open(folder / _UNLOCKED_LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.rename(folder / _UNLOCKED_LOCK_FILE, folder / LOCK_FILE)
        yield folder
    finally:
        # Removed while still locked, so no sweep takes it for abandoned halfway through.
        shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def remove_abandoned_load_folders(temp_dir: str | None = None) -> list[Path]:
    """Remove the load folders in the temp dir whose process is gone (their lock is free); returns them.

    A folder without a lock file is left alone: it is being created, or it is not a load's."""
    removed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{LOAD_FOLDER_PREFIX}*"):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            lock = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its load is running, in this process or another
        finally:
            # Closing drops a lock this call took; the folder goes while nobody can be writing to it.
            os.close(lock)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
