"""What every command shares: the registry from the environment, argument shapes, types and output."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from maas.config import Settings

if TYPE_CHECKING:
    from maas.registry import ModelRegistry
    from maas.registry.admin import RegistryAdmin

    # Generic only to type checkers: at run time argparse's class takes no subscript.
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def registry() -> ModelRegistry:
    from maas.registry import ModelRegistry

    return ModelRegistry.from_settings(Settings.from_env())


def reachable_registry() -> ModelRegistry:
    """The registry, once its bucket has answered: for commands that work a long time before their first
    storage call (training), so a store that is down, a stale endpoint or missing credentials fail in the
    first second, not after the work."""
    from maas.objects import storage_errors

    found = registry()
    with storage_errors(f"s3://{found.bucket}", s3=found.s3, bucket=found.bucket):
        found.s3.head_bucket(Bucket=found.bucket)
    return found


def admin() -> RegistryAdmin:
    from maas.registry.admin import RegistryAdmin

    return RegistryAdmin(registry())


def default_user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (e.g. a container with an unknown uid)
        return None


# The reference forms maas.registry.references parses, as every command that takes one explains them.
MODEL_REFERENCE_HELP = "name, name@alias, name/versions/<n> or name/versions/<alias>"


def add_command_group(commands: Commands, name: str, help: str) -> Commands:
    """`maas NAME COMMAND ...`: a command whose subcommands are required."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def add_model_reference(parser: argparse.ArgumentParser, name: str, **options: Any) -> None:
    """The argument (positional `ref` or an option such as `--model`) naming one model version."""
    parser.add_argument(name, metavar="REF", help=MODEL_REFERENCE_HELP, **options)


def version(text: str) -> int:
    from maas.registry.references import VERSION_PATTERN

    if not VERSION_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a version number from 1, got {text!r}")
    return int(text)


def positive_number(text: str) -> float:
    """An argument type for a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def positive_integer(text: str) -> int:
    """An argument type for an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative(what: str, *, finite: bool = True) -> Callable[[str], float]:
    """An argument type for a number >= 0 (and, when `finite`, not inf); `what` names it in the message."""
    bound = "finite, non-negative" if finite else "non-negative"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what}, got {text!r}") from None
        if not value >= 0 or (finite and value == math.inf):
            raise argparse.ArgumentTypeError(f"expected a {bound} {what}, got {text!r}")
        return value

    return parse


# Hours may be inf: `maas registry gc --older-than inf` then collects nothing.
hours = non_negative("number of hours", finite=False)


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
