"""The local stack's data folder (`.maas/` in the checkout unless MAAS_DATA_DIR names another), the lock a
stack holds on it, and the descriptor a running stack leaves in it so that every `maas` command can find it.

The lock, an exclusive flock on `.lock`, is taken before the store starts and held until the stack has
stopped: a second stack (or `maas serve --reset`) on the same folder is refused even while the first is
still seeding, and the kernel releases it when the process dies, however it dies. The descriptor,
`stack.json`, is written when the stack serves and removed when it stops; it counts only while the lock is
held, so one left by a stack that died is never mistaken for a running one, even when its process id now
belongs to another process. It holds no secret: the embedded store's credentials are moto's fixed dummy keys.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENV_DATA_DIR = "MAAS_DATA_DIR"
DATA_FOLDER_NAME = ".maas"
DESCRIPTOR_FILE = "stack.json"
DESCRIPTOR_FORMAT = 1
LOCK_FILE = ".lock"
# How long a stack waits for the lock before it is refused: a `maas` command probing it (running_stack)
# holds it for a moment, which must not turn a start into a refusal.
LOCK_WAIT_SECONDS = 1.0
LOCK_RETRY_SECONDS = 0.05


def data_folder(environ: Mapping[str, str], project_root: Path) -> Path:
    """MAAS_DATA_DIR when set and not empty, else `.maas/` in the project root."""
    chosen = environ.get(ENV_DATA_DIR, "").strip()
    return Path(chosen).expanduser().resolve() if chosen else project_root / DATA_FOLDER_NAME


@dataclass(frozen=True, slots=True)
class StackDescriptor:
    """Where a running local stack answers: its API, its object store and the bucket of its registry."""

    url: str
    endpoint_url: str
    bucket: str
    region: str
    pid: int
    data_dir: str
    started_at: str
    # The AWS variables a client needs for this store (the embedded store's dummy credentials).
    credentials: dict[str, str] = field(default_factory=dict)
    format: int = DESCRIPTOR_FORMAT

    def to_json(self) -> str:
        return record_json(self)

    @classmethod
    def from_json(cls, text: str) -> StackDescriptor:
        return cls(**record_fields(text, DESCRIPTOR_FORMAT, "a stack descriptor"))


def record_json(record: Any) -> str:
    """A small dataclass record as the JSON file that holds it (the descriptor, a saved deployed stack)."""
    return json.dumps(asdict(record), indent=2, sort_keys=True) + "\n"


def record_fields(text: str, expected_format: int, what: str) -> dict[str, Any]:
    """The fields of a record file, refused (ValueError) unless it is a JSON object of `expected_format`:
    a file of another maas version is not guessed at."""
    document: Any = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise ValueError(f"expected {what} of format {expected_format}")
    return document


def write_descriptor(folder: Path, descriptor: StackDescriptor) -> Path:
    """Write `stack.json` whole or not at all (a reader never sees half of it); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DESCRIPTOR_FILE
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".stack-", suffix=".json", delete=False) as out:
        out.write(descriptor.to_json())
    os.replace(out.name, target)
    return target


def remove_descriptor(folder: Path, pid: int | None = None) -> None:
    """Remove `stack.json`, only if it is this process's (or `pid`'s): a second stack's stays."""
    owner = os.getpid() if pid is None else pid
    found = _read(folder / DESCRIPTOR_FILE)
    if found is not None and found.pid == owner:
        (folder / DESCRIPTOR_FILE).unlink(missing_ok=True)


class DataFolderLock:
    """The exclusive hold of a stack on its data folder (an flock on `<folder>/.lock`), from before its
    store starts until after it has stopped."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self, wait_seconds: float = 0.0) -> bool:
        """Take the lock, trying for up to `wait_seconds`; False when another holder keeps it (one of this
        process's own included)."""
        if self._descriptor is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    return False
                time.sleep(LOCK_RETRY_SECONDS)
                continue
            self._descriptor = descriptor
            return True

    def release(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)  # closing the only descriptor of this open file releases its flock


def folder_in_use(folder: Path) -> bool | None:
    """Whether a stack holds `folder`'s lock now; None when the folder has no lock file (no stack that
    takes the lock ever ran there)."""
    probe = DataFolderLock(folder)
    if not probe.path.exists():
        return None
    if not probe.acquire():
        return True
    probe.release()
    return False


def running_stack(folder: Path) -> StackDescriptor | None:
    """The descriptor of the stack serving from `folder`, or None when none is (absent, unreadable, or
    left by a stack that no longer holds the folder's lock)."""
    found = _read(folder / DESCRIPTOR_FILE)
    if found is None:
        return None
    in_use = folder_in_use(folder)
    if in_use is None:
        # Written by a stack from before the lock existed: only its process id can tell.
        return found if _process_alive(found.pid) else None
    return found if in_use else None


def _read(path: Path) -> StackDescriptor | None:
    try:
        return StackDescriptor.from_json(path.read_text())
    except (OSError, ValueError, TypeError):
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True
