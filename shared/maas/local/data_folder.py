"""The local stack's data folder (`.maas/` in the checkout unless MAAS_DATA_DIR names another), and the
descriptor a running stack leaves in it so that every `maas` command can find the stack.

The descriptor, `stack.json`, is written when the stack serves and removed when it stops; one left by a
stack that died is recognised by its process id, so a dead stack is never mistaken for a running one.
It holds no secret: the embedded store's credentials are moto's fixed dummy keys.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENV_DATA_DIR = "MAAS_DATA_DIR"
DATA_FOLDER_NAME = ".maas"
DESCRIPTOR_FILE = "stack.json"
DESCRIPTOR_FORMAT = 1


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
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackDescriptor:
        document: Any = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != DESCRIPTOR_FORMAT:
            raise ValueError(f"expected a stack descriptor of format {DESCRIPTOR_FORMAT}")
        return cls(**document)


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


def running_stack(folder: Path) -> StackDescriptor | None:
    """The descriptor of the stack serving from `folder`, or None when none is (absent, unreadable, or left
    by a process that is gone)."""
    found = _read(folder / DESCRIPTOR_FILE)
    if found is None or not _process_alive(found.pid):
        return None
    return found


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
