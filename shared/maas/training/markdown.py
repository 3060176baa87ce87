"""Markdown for the model card: tables and code spans escaped so no user text can break them, and the
cell formatting of the values a card shows."""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Sequence

from maas.training.report import format_number


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [_row(header), "|" + "---|" * len(header)]
    lines.extend(_row(cells) for cells in rows)
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(text) for text in cells) + " |"


def _cell(text: str) -> str:
    # A raw "|" ends the cell and a newline ends the table; <br> keeps a multi-line value in one cell.
    return "<br>".join(text.replace("|", "\\|").splitlines()) if text else text


def one_line(text: str) -> str:
    return " ".join(text.split())


def code_span(text: str) -> str:
    # A backtick inside would close a single-backtick span early.
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def signed(value: float) -> str:
    return f"{value:+.4g}"


def cell_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    # numbers' ABCs so numpy scalars from a recipe read like Python ones.
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format_number(float(value))
    if isinstance(value, str):
        return value
    # Lists and dicts as JSON, so the card reads the same as the manifest's params.
    return json.dumps(value, sort_keys=True, default=str)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
