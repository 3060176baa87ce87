"""A batch job's output lines: one JSON document per input row, `{"outputs": {...}}` or `{"error": ...}`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson


def encode_rows(
    outputs: dict[str, npt.NDArray[Any]], positions: list[int], lines: list[bytes | None]
) -> None:
    """One `{"outputs": {...}}` line per row, written into `lines` at the row's position."""
    columns = [_json_rows(array) for array in outputs.values()]
    heads = [orjson.dumps(name) + b":" for name in outputs]
    if len(columns) == 1:  # the common case, without a join per row
        opening = b'{"outputs":{' + heads[0]
        for position, row in zip(positions, columns[0], strict=True):
            lines[position] = opening + row + b"}}"
        return
    for index, position in enumerate(positions):
        fields = b",".join(head + column[index] for head, column in zip(heads, columns, strict=True))
        lines[position] = b'{"outputs":{' + fields + b"}}"


def error_line(line: int, message: str) -> bytes:
    """The line of a row that got no outputs, saying why. Only here does the message name its line: the
    job's status carries the line as its own field, so its message names it nowhere (no `line 6: line 6:`)."""
    return orjson.dumps({"error": f"line {line}: {message}"})


def _json_rows(array: npt.NDArray[Any]) -> list[bytes]:
    """Each row as JSON. Numbers go straight from numpy (NaN and Infinity, which JSON lacks, as null);
    text comes back as str."""
    if array.dtype.kind in "biuf":
        # orjson knows numpy's canonical scalar types in native byte order; onnxruntime may hand back an
        # equal but differently named one (longlong for int64), which a view renames without copying.
        canonical = np.dtype(f"{array.dtype.kind}{array.dtype.itemsize}")
        rows = np.ascontiguousarray(array.astype(canonical, copy=False)).view(canonical)
        return [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in rows]
    return [orjson.dumps(_text(row)) for row in array.tolist()]


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_text(item) for item in value]
    return value
