"""jsonl job input: one JSON value per line, decoded into row batches for one model's inputs.

A line is the row itself for a single-input model (a list, a number or a string), or an object mapping every
input name to its row. JSON is read as every event path reads it (maas.service.json_values): NaN, Infinity,
-Infinity and numbers beyond float64 (as +-inf) are read, and the input's datatype decides: FP inputs take
them, others refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy.typing as npt

from maas.errors import InvalidInput
from maas.protocol.tensor_codec import array_from_json
from maas.service.job_rows import ROW_ERRORS, Row, RowBatch, RowChunk, RowGroups, RowSpec, row_specs
from maas.service.json_values import NotJson, json_kind, loads_json
from maas.signature import Signature

MAX_ECHOED_KEYS = 8
# A line nested deeper than this is refused before numpy walks it.
MAX_NESTING = 32


class JsonlDecoder:
    """Decodes chunks of jsonl lines for one model's inputs."""

    def __init__(self, model: str, signature: Signature, *, max_string_bytes: int | None = None) -> None:
        self.specs = row_specs(model, signature)
        # Each text element's UTF-8 bytes (MAAS_MAX_STRING_BYTES); None: unbounded.
        self.max_string_bytes = max_string_bytes

    def chunk(self, first_line: int, lines: Sequence[bytes]) -> RowChunk:
        chunk = RowChunk(lines=list(range(first_line, first_line + len(lines))))
        values: list[Any] = []
        positions: list[int] = []
        for position, line in enumerate(lines):
            try:
                values.append(loads_json(line))
            except NotJson as exc:
                chunk.fail(position, not_json_message(exc))
                continue
            positions.append(position)
        if values:
            joined = b"\n".join(lines)
            self._stack(chunk, positions, values, b"true" in joined or b"false" in joined)
        return chunk

    def _stack(
        self, chunk: RowChunk, positions: list[int], values: list[Any], may_hold_booleans: bool
    ) -> None:
        """All rows as one batch when they agree (the common case, done in numpy); else row by row."""
        try:
            columns = self._columns(values)
            inputs = {
                spec.name: self._column_array(spec, column, may_hold_booleans)
                for spec, column in zip(self.specs, columns, strict=True)
            }
        except ROW_ERRORS:
            self._stack_row_by_row(chunk, positions, values)
            return
        chunk.batches.append(RowBatch(positions, inputs))

    def _columns(self, values: list[Any]) -> list[list[Any]]:
        if len(self.specs) == 1 and not any(isinstance(value, dict) for value in values):
            return [values]
        names = [spec.name for spec in self.specs]
        if not all(isinstance(value, dict) and len(value) == len(names) for value in values):
            raise InvalidInput("rows differ")
        try:
            return [[value[name] for value in values] for name in names]
        except KeyError:
            raise InvalidInput("rows differ") from None

    def _column_array(self, spec: RowSpec, column: list[Any], may_hold_booleans: bool) -> npt.NDArray[Any]:
        if spec.datatype.v2 == "BYTES" and not all(isinstance(item, str | list) for item in column):
            raise InvalidInput("rows differ")  # numpy would quietly turn a number into text
        shape = [len(column), *_nested_shape(column[0])]
        spec.check(shape[1:], f"input '{spec.name}'")
        return array_from_json(
            column,
            spec.datatype,
            shape,
            f"input '{spec.name}'",
            may_hold_booleans=may_hold_booleans,
            max_string_bytes=self.max_string_bytes,
        )

    def _stack_row_by_row(self, chunk: RowChunk, positions: list[int], values: list[Any]) -> None:
        groups = RowGroups()
        for position, value in zip(positions, values, strict=True):
            try:
                groups.add(position, self.row(value))
            except ROW_ERRORS as exc:
                chunk.fail(position, exc.message)
        chunk.batches += groups.batches()

    def row(self, value: Any) -> Row:
        """One line's value as one array per input, each without the batch dimension."""
        names = [spec.name for spec in self.specs]
        if isinstance(value, dict):
            if set(value) != set(names):
                raise InvalidInput(
                    f"expected an object with the keys {names}, got the keys {_keys(list(value))}"
                )
            return {spec.name: self._row_array(spec, value[spec.name]) for spec in self.specs}
        if len(self.specs) != 1:
            raise InvalidInput(f"expected an object with the keys {names}, got a JSON {json_kind(value)}")
        return {self.specs[0].name: self._row_array(self.specs[0], value)}

    def _row_array(self, spec: RowSpec, value: Any) -> npt.NDArray[Any]:
        where = f"input '{spec.name}'"
        if isinstance(value, dict) or value is None:
            raise InvalidInput(f"{where}: expected a {spec.datatype.v2} row, got a JSON {json_kind(value)}")
        shape = _nested_shape(value)
        spec.check(shape, where)
        data = value if isinstance(value, list) else [value]
        return array_from_json(data, spec.datatype, shape, where, max_string_bytes=self.max_string_bytes)


def _nested_shape(value: Any) -> list[int]:
    """The shape a nested list claims through its first elements; the full check happens in numpy."""
    shape: list[int] = []
    item = value
    while isinstance(item, list):
        shape.append(len(item))
        if not item:
            break
        item = item[0]
        if len(shape) > MAX_NESTING:
            raise InvalidInput(f"expected at most {MAX_NESTING} levels of nesting, got deeper")
    return shape


def not_json_message(exc: NotJson) -> str:
    """Why a line is no JSON value, as every jsonl job's line error says it."""
    if exc.got.startswith("bytes"):
        return "expected UTF-8 text, got other bytes"
    if exc.got.startswith("nothing"):
        return "expected a JSON value, got an empty line"
    return f"expected one JSON value per line, got {exc.got}"


def _keys(keys: list[str]) -> str:
    shown = [repr(k) if len(k) <= 64 else f"a key of {len(k)} characters" for k in keys[:MAX_ECHOED_KEYS]]
    more = f" and {len(keys) - MAX_ECHOED_KEYS} more" if len(keys) > MAX_ECHOED_KEYS else ""
    return "[" + ", ".join(shown) + "]" + more
