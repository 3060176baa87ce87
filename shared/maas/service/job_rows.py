"""A batch job's input, read as a stream and decoded into row batches a model can run.

jsonl  one JSON value per line: the row itself for a single-input model (a list, a number or a string),
       or an object mapping every input name to its row. A row is the tensor without its batch dimension.
csv    one record per row, its cells the row's values in row-major order; single-input models only.
       For numeric inputs a first record that is not all numbers is a header, and is skipped.
npy    one array of shape [rows, ...row]; single-input models only. Object arrays (pickles) are refused.

A bad line becomes that line's error; a file that cannot be read as its format at all raises
MalformedJobInput, which fails the job. Nothing here holds more than one chunk of rows in memory.
"""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from maas.api.tensor_codec import array_from_json, check_string_lengths
from maas.datatypes import BY_V2, Datatype
from maas.errors import InvalidInput, PayloadTooLarge
from maas.signature import Signature, TensorSpec

# What one read from the object store asks for; lines longer than a chunk are joined across reads.
READ_CHUNK_BYTES = 1024 * 1024
MAX_ECHOED_KEYS = 8
UTF8_BOM = codecs.BOM_UTF8
# What makes one row (not the whole file) unusable: a bad value, or a text element over MAAS_MAX_STRING_BYTES.
ROW_ERRORS = (InvalidInput, PayloadTooLarge)


class MalformedJobInput(InvalidInput):
    """The input file as a whole cannot be read as its format (not a single line's problem)."""


class ByteStream(Protocol):
    """What a botocore StreamingBody offers, and a file opened in binary mode too."""

    def read(self, amt: int | None = ..., /) -> bytes: ...


@dataclass(slots=True)
class RowBatch:
    """Rows that stack into one run: their positions in the chunk, and one array per input."""

    positions: list[int]
    inputs: dict[str, npt.NDArray[Any]]


@dataclass(slots=True)
class RowChunk:
    """Consecutive rows of the input: `lines[i]` is row i's 1-based line (or npy row) number."""

    lines: list[int]
    batches: list[RowBatch] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)


@dataclass(frozen=True, slots=True)
class _RowSpec:
    name: str
    datatype: Datatype
    # The input's shape without its batch dimension; -1 is any size.
    shape: tuple[int, ...]

    def check(self, shape: Sequence[int], where: str) -> None:
        if len(shape) != len(self.shape) or any(
            want >= 0 and want != got for want, got in zip(self.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"{where}: expected a row of shape {list(self.shape)} (-1 = any size), got {list(shape)}"
            )


def row_specs(model: str, signature: Signature) -> list[_RowSpec]:
    """Each input's row: its shape without the batch dimension, which must be -1 (or 1) for a job."""
    specs = []
    for spec in signature.inputs:
        if not spec.shape or spec.shape[0] not in (-1, 1):
            raise MalformedJobInput(
                f"model '{model}': input '{spec.name}' has shape {spec.shape}; batch jobs need a leading "
                "batch dimension of -1 (or 1)"
            )
        specs.append(_RowSpec(spec.name, BY_V2[spec.datatype], tuple(spec.shape[1:])))
    return specs


def max_rows_per_run(signature: Signature, wanted: int) -> int:
    """A model whose batch dimension is fixed at 1 takes one row per run."""
    return 1 if any(spec.shape[:1] == [1] for spec in signature.inputs) else wanted


class RowDecoder:
    """Decodes chunks of one format for one model's inputs."""

    def __init__(
        self, model: str, signature: Signature, input_format: str, *, max_string_bytes: int | None = None
    ) -> None:
        self.model = model
        self.specs = row_specs(model, signature)
        self.input_format = input_format
        # Each text element's UTF-8 bytes (MAAS_MAX_STRING_BYTES); None: unbounded.
        self.max_string_bytes = max_string_bytes
        if input_format in ("csv", "npy") and len(self.specs) != 1:
            raise MalformedJobInput(
                f"input.{input_format}: model '{model}' has {len(self.specs)} inputs "
                f"{[s.name for s in self.specs]}; {input_format} jobs need a single-input model, "
                "use jsonl with one object per line"
            )

    # ---- jsonl

    def jsonl_chunk(self, first_line: int, lines: Sequence[bytes]) -> RowChunk:
        chunk = RowChunk(lines=list(range(first_line, first_line + len(lines))))
        values: list[Any] = []
        positions: list[int] = []
        for position, line in enumerate(lines):
            try:
                values.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                chunk.errors[position] = f"line {chunk.lines[position]}: {_not_json(line)}"
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

    def _column_array(self, spec: _RowSpec, column: list[Any], may_hold_booleans: bool) -> npt.NDArray[Any]:
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
        groups: dict[tuple[tuple[int, ...], ...], tuple[list[int], list[dict[str, npt.NDArray[Any]]]]] = {}
        for position, value in zip(positions, values, strict=True):
            try:
                row = self.jsonl_row(value)
            except ROW_ERRORS as exc:
                chunk.errors[position] = f"line {chunk.lines[position]}: {exc.message}"
                continue
            key = tuple(array.shape for array in row.values())
            group = groups.setdefault(key, ([], []))
            group[0].append(position)
            group[1].append(row)
        for group_positions, rows in groups.values():
            inputs = {spec.name: np.stack([row[spec.name] for row in rows]) for spec in self.specs}
            chunk.batches.append(RowBatch(group_positions, inputs))

    def jsonl_row(self, value: Any) -> dict[str, npt.NDArray[Any]]:
        """One line's value as one array per input, each without the batch dimension."""
        names = [spec.name for spec in self.specs]
        if isinstance(value, dict):
            if set(value) != set(names):
                raise InvalidInput(
                    f"expected an object with the keys {names}, got the keys {_keys(list(value))}"
                )
            return {spec.name: self._row_array(spec, value[spec.name]) for spec in self.specs}
        if len(self.specs) != 1:
            raise InvalidInput(f"expected an object with the keys {names}, got a JSON {_json_kind(value)}")
        return {self.specs[0].name: self._row_array(self.specs[0], value)}

    def _row_array(self, spec: _RowSpec, value: Any) -> npt.NDArray[Any]:
        where = f"input '{spec.name}'"
        if isinstance(value, dict) or value is None:
            raise InvalidInput(f"{where}: expected a {spec.datatype.v2} row, got a JSON {_json_kind(value)}")
        shape = _nested_shape(value)
        spec.check(shape, where)
        data = value if isinstance(value, list) else [value]
        return array_from_json(data, spec.datatype, shape, where, max_string_bytes=self.max_string_bytes)

    # ---- csv

    def csv_chunk(self, records: Sequence[tuple[int, list[str]]]) -> RowChunk:
        (spec,) = self.specs
        chunk = RowChunk(lines=[line for line, _ in records])
        cells = [record for _, record in records]
        if spec.datatype.v2 not in ("BYTES", "BOOL"):
            try:
                stacked = np.array(cells, dtype=spec.datatype.numpy)
                if stacked.ndim == 2:
                    shape = _csv_row_shape(spec, stacked.shape[1])
                    chunk.batches.append(
                        RowBatch(list(range(len(cells))), {spec.name: stacked.reshape(len(cells), *shape)})
                    )
                    return chunk
            except (ValueError, OverflowError, InvalidInput):
                pass  # some record is bad: find which, row by row
        groups: dict[tuple[int, ...], tuple[list[int], list[npt.NDArray[Any]]]] = {}
        for position, record in enumerate(cells):
            try:
                row = self.csv_row(record)
            except ROW_ERRORS as exc:
                chunk.errors[position] = f"line {chunk.lines[position]}: {exc.message}"
                continue
            group = groups.setdefault(row.shape, ([], []))
            group[0].append(position)
            group[1].append(row)
        for positions, rows in groups.values():
            chunk.batches.append(RowBatch(positions, {spec.name: np.stack(rows)}))
        return chunk

    def csv_row(self, record: list[str]) -> npt.NDArray[Any]:
        (spec,) = self.specs
        where = f"input '{spec.name}'"
        shape = _csv_row_shape(spec, len(record))
        if spec.datatype.v2 == "BYTES":
            if self.max_string_bytes is not None:
                check_string_lengths(record, where, self.max_string_bytes)
            return np.array(record, dtype=object).reshape(shape)
        if spec.datatype.v2 == "BOOL":
            return np.array([_csv_bool(cell, where) for cell in record], dtype=bool).reshape(shape)
        values: list[float | int] = []
        for cell in record:
            try:
                values.append(int(cell) if spec.datatype.numpy.kind in "iu" else float(cell))
            except ValueError:
                kind = "an empty cell" if not cell.strip() else "a cell that is not a number"
                raise InvalidInput(f"{where}: expected {spec.datatype.v2} values, got {kind}") from None
        return array_from_json(values, spec.datatype, list(shape), where).reshape(shape)

    def is_csv_header(self, record: list[str]) -> bool:
        """A numeric model's first record that is not all numbers names the columns."""
        (spec,) = self.specs
        if spec.datatype.v2 in ("BYTES", "BOOL"):
            return False
        for cell in record:
            try:
                float(cell)
            except ValueError:
                return True
        return False


def _csv_row_shape(spec: _RowSpec, cells: int) -> tuple[int, ...]:
    where = f"input '{spec.name}'"
    if spec.shape == ():
        if cells != 1:
            raise InvalidInput(f"{where}: expected 1 value per record, got {cells}")
        return ()
    unknown = [i for i, dim in enumerate(spec.shape) if dim < 0]
    known = math.prod(dim for dim in spec.shape if dim >= 0)
    if not unknown:
        if cells != known:
            raise InvalidInput(
                f"{where}: expected {known} values per record (shape {list(spec.shape)}), got {cells}"
            )
        return spec.shape
    if len(unknown) > 1 or cells % max(known, 1) or cells == 0:
        raise InvalidInput(f"{where}: cannot lay {cells} values out as shape {list(spec.shape)}")
    shape = list(spec.shape)
    shape[unknown[0]] = cells // max(known, 1)
    return tuple(shape)


def _csv_bool(cell: str, where: str) -> bool:
    text = cell.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InvalidInput(f"{where}: expected BOOL values (true/false/1/0), got another value")


def _nested_shape(value: Any) -> list[int]:
    """The shape a nested list claims through its first elements; the full check happens in numpy."""
    shape: list[int] = []
    item = value
    while isinstance(item, list):
        shape.append(len(item))
        if not item:
            break
        item = item[0]
        if len(shape) > 32:
            raise InvalidInput("expected at most 32 levels of nesting, got deeper")
    return shape


def _not_json(line: bytes) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "expected UTF-8 text, got other bytes"
    if not text.strip():
        return "expected a JSON value, got an empty line"
    return "expected one JSON value per line, got text that is not JSON"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _keys(keys: list[str]) -> str:
    shown = [repr(k) if len(k) <= 64 else f"a key of {len(k)} characters" for k in keys[:MAX_ECHOED_KEYS]]
    more = f" and {len(keys) - MAX_ECHOED_KEYS} more" if len(keys) > MAX_ECHOED_KEYS else ""
    return "[" + ", ".join(shown) + "]" + more


# ---- streams


def iter_lines(
    stream: ByteStream, max_line_bytes: int, chunk_bytes: int = READ_CHUNK_BYTES
) -> Iterator[bytes]:
    """Lines without their endings (\\n or \\r\\n), read chunk by chunk; a final line needs no newline.

    A line longer than `max_line_bytes` fails the job: holding it would break the streaming promise."""
    pending = b""
    bom_checked = False
    line_number = 0
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            break
        pending += chunk
        if not bom_checked and len(pending) >= len(UTF8_BOM):
            pending = pending.removeprefix(UTF8_BOM)
            bom_checked = True
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            line_number += 1
            yield line.removesuffix(b"\r")
        if len(pending) > max_line_bytes:
            raise MalformedJobInput(
                f"input: line {line_number + 1} is longer than {max_line_bytes} bytes "
                "(MAAS_MAX_REQUEST_BYTES)"
            )
    if pending:
        yield pending.removesuffix(b"\r")


def iter_csv_records(lines: Iterable[bytes]) -> Iterator[tuple[int, list[str]]]:
    """Records with the line each starts on; quoted cells may span lines, as the csv module allows."""
    text_lines = _decoded(lines)
    reader = csv.reader(text_lines)
    previous_end = 0
    try:
        for record in reader:
            yield previous_end + 1, record
            previous_end = reader.line_num
    except csv.Error as exc:
        raise MalformedJobInput(f"input.csv: line {reader.line_num}: {exc}") from None


def _decoded(lines: Iterable[bytes]) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        try:
            # The csv module wants line endings back: a quoted cell may hold a newline.
            yield line.decode("utf-8") + "\n"
        except UnicodeDecodeError:
            raise MalformedJobInput(f"input.csv: line {number} is not valid UTF-8") from None


@dataclass(frozen=True, slots=True)
class NpyHeader:
    rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.row_shape) * self.dtype.itemsize


def read_npy_header(stream: ByteStream) -> NpyHeader:
    """The header of a .npy stream, leaving the stream at the first data byte. Never unpickles."""
    reader = _ExactReader(stream)
    try:
        version = np.lib.format.read_magic(reader)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(reader)
        elif version in ((2, 0), (3, 0)):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(reader)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, OSError, EOFError) as exc:
        raise MalformedJobInput(
            f"input.npy: expected a NumPy .npy file, got one whose header fails ({exc})"
        ) from None
    if dtype.hasobject:
        raise MalformedJobInput(
            "input.npy: expected numbers or fixed-width strings, got an object array (a pickle)"
        )
    if not shape:
        raise MalformedJobInput("input.npy: expected an array of rows [rows, ...], got a 0-d array")
    if fortran_order and len(shape) > 1:
        raise MalformedJobInput(
            "input.npy: expected C (row-major) order, got Fortran order; save np.ascontiguousarray(rows)"
        )
    return NpyHeader(rows=int(shape[0]), row_shape=tuple(int(d) for d in shape[1:]), dtype=dtype)


def npy_chunks(
    stream: ByteStream, header: NpyHeader, rows_per_chunk: int
) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """(first row number, rows) pieces of the array, read `rows_per_chunk` rows at a time."""
    reader = _ExactReader(stream)
    done = 0
    while done < header.rows:
        count = min(rows_per_chunk, header.rows - done)
        wanted = count * header.row_bytes
        data = reader.read(wanted)
        if len(data) != wanted:
            raise MalformedJobInput(
                f"input.npy: the header promises {header.rows} rows, the file ends after "
                f"{done + len(data) // max(header.row_bytes, 1)}"
            )
        rows = np.frombuffer(data, dtype=header.dtype).reshape(count, *header.row_shape)
        yield done + 1, rows
        done += count
    if reader.read(1):
        raise MalformedJobInput(f"input.npy: expected {header.rows} rows as the header says, got more bytes")


def npy_chunk(
    first_row: int, rows: npt.NDArray[Any], spec: TensorSpec, *, max_string_bytes: int | None = None
) -> RowChunk:
    """Rows of an npy input as one batch in the input's datatype; a row holding a text element over
    `max_string_bytes` is that row's error."""
    count = len(rows)
    chunk = RowChunk(lines=list(range(first_row, first_row + count)))
    array = npy_rows_as(rows, spec)
    positions = list(range(count))
    # A fixed-width string dtype bounds every element: a U character is 4 bytes, at least its UTF-8 size.
    if (
        count
        and max_string_bytes is not None
        and rows.dtype.kind in "US"
        and rows.dtype.itemsize > max_string_bytes
    ):
        where = f"input '{spec.name}'"
        per_row = array.reshape(count, -1)
        for position in range(count):
            try:
                check_string_lengths(per_row[position].tolist(), where, max_string_bytes)
            except PayloadTooLarge as exc:
                chunk.errors[position] = f"line {chunk.lines[position]}: {exc.message}"
        if chunk.errors:
            positions = [position for position in positions if position not in chunk.errors]
            array = array[positions]
    if positions:
        chunk.batches.append(RowBatch(positions, {spec.name: array}))
    return chunk


def npy_rows_as(rows: npt.NDArray[Any], spec: TensorSpec) -> npt.NDArray[Any]:
    """Rows in the input's datatype: same-kind casts (float64 to FP32) are made, narrowing kinds refused."""
    target = BY_V2[spec.datatype]
    if target.v2 == "BYTES":
        if rows.dtype.kind not in "US":
            raise MalformedJobInput(
                f"input.npy: expected strings for input '{spec.name}', got dtype {rows.dtype}"
            )
        return rows.astype(object)
    if rows.dtype == target.numpy:
        return rows
    if not np.can_cast(rows.dtype, target.numpy, casting="same_kind"):
        raise MalformedJobInput(
            f"input.npy: expected {target.v2} values for input '{spec.name}' (or a type that casts to it), "
            f"got dtype {rows.dtype}"
        )
    return rows.astype(target.numpy)


class _ExactReader:
    """read(n) that returns n bytes unless the stream ends: a network body may return fewer per call."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return self._stream.read()
        parts: list[bytes] = []
        remaining = size
        while remaining > 0:
            part = self._stream.read(remaining)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)
