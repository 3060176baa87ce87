"""What every command shares: the registry from the environment, argument types and output formatting."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from maas.config import Settings

if TYPE_CHECKING:
    from maas.registry import ModelRegistry
    from maas.registry.admin import RegistryAdmin


def registry() -> ModelRegistry:
    from maas.registry import ModelRegistry

    return ModelRegistry.from_settings(Settings.from_env())


def admin() -> RegistryAdmin:
    from maas.registry.admin import RegistryAdmin

    return RegistryAdmin(registry())


def default_user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (e.g. a container with an unknown uid)
        return None


def version(text: str) -> int:
    from maas.registry.references import VERSION_PATTERN

    if not VERSION_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a version number from 1, got {text!r}")
    return int(text)


def hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of hours, got {text!r}") from None
    if not hours >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number of hours, got {text!r}")
    return hours


def print_json(document: Any) -> int:
    print(json.dumps(document, indent=2, default=str))
    return 0


def cell(value: Any, limit: int = 48) -> str:
    text = "-" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
