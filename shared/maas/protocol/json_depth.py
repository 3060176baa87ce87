"""How deeply a request's JSON nests, held to MAAS_MAX_JSON_DEPTH.

Depth counts containers from the document's root: `{"inputs": [{"data": [[1.0]]}]}` is 5 deep. The JSON
parser (pydantic-core) already stops at its own recursion limit of a few hundred levels, so no document
costs unbounded recursion; this is the tighter bound a deployment chooses.

Only the free-form fields are walked: `parameters` in full (they are small), tensor data along its first
elements, which is a rectangular tensor's whole depth (a ragged one is refused by the tensor codec anyway).
So a multi-megabyte tensor costs a handful of steps, not a walk over every element.
"""

from __future__ import annotations

from typing import Any

from maas.config import ENV_MAX_JSON_DEPTH
from maas.errors import InvalidInput


def too_deep(where: str, limit: int) -> InvalidInput:
    return InvalidInput(
        f"{where}: expected JSON nested at most {limit} levels deep ({ENV_MAX_JSON_DEPTH}), got deeper"
    )


def check_depth(value: Any, where: str, limit: int, *, above: int) -> None:
    """Every path through `value`, a field `above` containers below the document's root."""
    pending: list[tuple[Any, int]] = [(value, above + 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            raise too_deep(where, limit)
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def check_leading_depth(value: Any, where: str, limit: int, *, above: int) -> None:
    """The path through each container's first element: all of a rectangular tensor's depth, in O(depth)."""
    depth, item = above, value
    while isinstance(item, list | dict):
        depth += 1
        if depth > limit:
            raise too_deep(where, limit)
        if not item:
            return
        item = item[0] if isinstance(item, list) else next(iter(item.values()))
