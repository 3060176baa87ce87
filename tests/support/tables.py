"""Table-driven cases with readable ids: each row of a table is one test, named by what it is about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

import pytest


class NamedCase(Protocol):
    @property
    def id(self) -> str: ...


Case = TypeVar("Case", bound=NamedCase)


def cases(argname: str, table: Iterable[Case]) -> pytest.MarkDecorator:
    """Parametrize `argname` over cases that carry their own `id`: `@cases("case", CASES)`."""
    rows = list(table)
    return pytest.mark.parametrize(argname, rows, ids=[row.id for row in rows])


def table(argnames: str, rows: Mapping[str, Any]) -> pytest.MarkDecorator:
    """Parametrize over a mapping from a readable id to the row's values (a tuple when `argnames` names
    several): `@table("text, expected", {"empty text": ("", 0), "one word": ("cat", 1)})`."""
    return pytest.mark.parametrize(argnames, list(rows.values()), ids=list(rows))
