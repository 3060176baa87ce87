"""Setting process variables for a while and putting every one back exactly as it was.

The local stack points boto3 at its store and the emulated functions read their template
environment from `os.environ`: both change the one process environment and must undo it on close.
"""

from __future__ import annotations

import os


class EnvironmentPatch:
    """Sets process variables and remembers each one's first value, so `restore()` undoes them all."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        """`value` None unsets the variable."""
        self._saved.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
