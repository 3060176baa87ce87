"""Find a CPython 3.12, the Lambda runtime's Python: the layer's bytecode is compiled with it and the built
layer is imported with it.

`python3.12` on PATH is not enough: a pyenv shim answers to that name and fails when 3.12 is not the
selected version. So each candidate is run, and pyenv's installed versions are tried after PATH's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

RUNTIME_NAME = "python3.12"
VERSION_PROBE = "import sys; print(sys.implementation.name, *sys.version_info[:2])"
EXPECTED = "cpython 3 12"
PROBE_TIMEOUT_S = 30.0


def find_python312(explicit: str | None = None) -> str | None:
    """`explicit` when given and a working CPython 3.12, else the first working one found; None if none."""
    candidates = [explicit] if explicit else _candidates()
    return next((candidate for candidate in candidates if is_cpython312(candidate)), None)


def is_cpython312(python: str) -> bool:
    try:
        done = subprocess.run(
            [python, "-I", "-c", VERSION_PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == EXPECTED


def _candidates() -> list[str]:
    found = [shutil.which(RUNTIME_NAME)]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found += [str(p) for p in sorted(pyenv_root.glob(f"versions/3.12*/bin/{RUNTIME_NAME}"), reverse=True)]
    found += [f"/usr/bin/{RUNTIME_NAME}", f"/usr/local/bin/{RUNTIME_NAME}"]
    return [candidate for candidate in found if candidate]
