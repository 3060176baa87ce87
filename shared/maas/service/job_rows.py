"""A batch job's input, read as a stream and decoded into row batches a model can run.

jsonl  one JSON value per line: the row itself for a single-input model (a list, a number or a string),
       or an object mapping every input name to its row. A row is the tensor without its batch dimension.
       JSON as every event path reads it (`loads_json`): NaN, Infinity, -Infinity and numbers beyond
       float64 (as +-inf) are read, and the input's datatype decides: FP inputs take them, others refuse.
csv    one record per row, its cells the row's values in row-major order; single-input models only.
       The first record is a header (and gets no output line) when the job says so (`csv_header`), or,
       when it does not, only when it is unambiguous: a numeric input and every cell a name, never a
       number, an empty cell or a missing-value marker such as NA. Any other first record is data.
npy    one array of shape [rows, ...row]; single-input models only. Only plain numbers and fixed-width
       strings: object arrays (pickles), structured and zero-width dtypes are refused, and the header's
       row count must account for the file's size exactly.

A bad line becomes that line's error; a file that cannot be read as its format at all raises
MalformedJobInput, which fails the job. Nothing here holds more than one chunk of rows in memory.
"""

from __future__ import annotations

import ast
import codecs
import csv
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

import numpy as np
import numpy.typing as npt
import orjson

from maas.datatypes import BY_V2, Datatype
from maas.errors import InvalidInput, PayloadTooLarge
from maas.protocol.tensor_codec import MAX_RANK, array_from_json, check_string_lengths
from maas.signature import Signature, TensorSpec

# What one read from the object store asks for; lines longer than a chunk are joined across reads.
READ_CHUNK_BYTES = 1024 * 1024
MAX_ECHOED_KEYS = 8
UTF8_BOM = codecs.BOM_UTF8
# What makes one row (not the whole file) unusable: a bad value, or a text element over MAAS_MAX_STRING_BYTES.
ROW_ERRORS = (InvalidInput, PayloadTooLarge)
NPY_MAGIC = b"\x93NUMPY"
# numpy's own bound on a header it did not write (np.lib.format._MAX_HEADER_SIZE); checked before reading.
MAX_NPY_HEADER_BYTES = 10_000
# The most of an npy file read (and held) at once, whatever the model's batch size.
NPY_CHUNK_BYTES = 16 * 1024 * 1024
# The integers orjson reads as integers; past them it reads a float, and the fallback parser agrees.
_JSON_INT_RANGE = range(-(2**63), 2**64)
_JSON_INT_DIGITS = 20
# Cells that mean "no value" in the tools that write csv files (pandas' defaults): data, never a header.
# Missing-value words as spreadsheets, R, pandas and JavaScript write them, compared with their
# punctuation taken out ("N.A.", "#N/A" and "<NA>" are all "na").
_MISSING_MARKERS = frozenset(
    ("na", "nan", "null", "none", "nil", "nat", "missing", "undefined", "true", "false", "inf", "infinity")
)
# A marker run into punctuation ("NaN%", "nan(0x1)", "null;") is a damaged value, not a column's name.
_DAMAGED_MARKER = re.compile(r"(?:n/?a|nan|null|none|nil|nat|inf|infinity|undefined|missing)[^a-z0-9_ ]")


class MalformedJobInput(InvalidInput):
    """The input file as a whole cannot be read as its format (not a single line's problem)."""


class NotJson(ValueError):
    """Text that no JSON reading can make a value of; `got` says what arrived, never quoting it."""

    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def loads_json(raw: bytes | str) -> Any:
    """One JSON value, read the same way on every event path (jsonl lines, async bodies).

    orjson reads nearly every real document; what it refuses goes to the standard library, which also reads
    NaN, Infinity and -Infinity, numbers beyond float64 (as +-inf) and integers of any length. Integers
    outside 64 bits become floats there as in orjson, so a value never depends on which parser read it.
    The datatype it lands in decides what is allowed (FP inputs take NaN and inf, integers refuse them)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _loads_what_orjson_refuses(raw)


def _loads_what_orjson_refuses(raw: bytes | str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NotJson("bytes that are not UTF-8 text") from None
    if not raw.strip():
        raise NotJson("nothing (an empty text)")
    try:
        return json.loads(raw, parse_int=_json_int)
    except RecursionError:
        raise NotJson("JSON nested too deep to read") from None
    except ValueError:
        raise NotJson("text that is not JSON") from None


def _json_int(text: str) -> int | float:
    # int() of thousands of digits is refused (and quadratic); float() reads any length, giving inf past
    # float64, as orjson does for integers outside 64 bits.
    if len(text) <= _JSON_INT_DIGITS:
        value = int(text)
        if value in _JSON_INT_RANGE:
            return value
    return float(text)


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
        self,
        model: str,
        signature: Signature,
        input_format: str,
        *,
        max_string_bytes: int | None = None,
        csv_header: bool | None = None,
    ) -> None:
        self.model = model
        self.specs = row_specs(model, signature)
        self.input_format = input_format
        # Each text element's UTF-8 bytes (MAAS_MAX_STRING_BYTES); None: unbounded.
        self.max_string_bytes = max_string_bytes
        # Whether a csv file's first record is a header, as the job says; None: only when unambiguous.
        self.csv_header = csv_header
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
                try:
                    values.append(_loads_what_orjson_refuses(line))
                except NotJson as exc:
                    chunk.errors[position] = f"line {chunk.lines[position]}: {_not_json(exc)}"
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
            raise InvalidInput(f"expected an object with the keys {names}, got a JSON {json_kind(value)}")
        return {self.specs[0].name: self._row_array(self.specs[0], value)}

    def _row_array(self, spec: _RowSpec, value: Any) -> npt.NDArray[Any]:
        where = f"input '{spec.name}'"
        if isinstance(value, dict) or value is None:
            raise InvalidInput(f"{where}: expected a {spec.datatype.v2} row, got a JSON {json_kind(value)}")
        shape = _nested_shape(value)
        spec.check(shape, where)
        data = value if isinstance(value, list) else [value]
        return array_from_json(data, spec.datatype, shape, where, max_string_bytes=self.max_string_bytes)

    # ---- csv

    def csv_chunk(self, records: Sequence[CsvRecord]) -> RowChunk:
        (spec,) = self.specs
        chunk = RowChunk(lines=[record.line for record in records])
        if spec.datatype.v2 not in ("BYTES", "BOOL") and not any(record.error for record in records):
            stacked = self._csv_numbers(spec, [record.cells for record in records])
            if stacked is not None:
                chunk.batches.append(RowBatch(list(range(len(records))), {spec.name: stacked}))
                return chunk
        groups: dict[tuple[int, ...], tuple[list[int], list[npt.NDArray[Any]]]] = {}
        for position, record in enumerate(records):
            try:
                if record.error is not None:
                    raise InvalidInput(record.error)
                row = self.csv_row(record.cells)
            except ROW_ERRORS as exc:
                chunk.errors[position] = f"line {chunk.lines[position]}: {exc.message}"
                continue
            group = groups.setdefault(row.shape, ([], []))
            group[0].append(position)
            group[1].append(row)
        for positions, rows in groups.values():
            chunk.batches.append(RowBatch(positions, {spec.name: np.stack(rows)}))
        return chunk

    def _csv_numbers(self, spec: _RowSpec, cells: list[list[str]]) -> npt.NDArray[Any] | None:
        """Every record at once, parsed in numpy and checked as JSON numbers are; None: some record is bad.

        Parsed wide (float64, int64) and then cast with the JSON checks, so a value the row-by-row path
        refuses (1e39 for FP32, 300 for INT8) is never quietly taken here."""
        try:
            parsed = np.array(cells, dtype=_csv_parse_dtype(spec.datatype))
            if parsed.ndim != 2:
                return None
            shape = _csv_row_shape(spec, parsed.shape[1])
            # The parsed array goes in as it is (array_from_json starts with np.asarray): no Python floats.
            return array_from_json(
                cast(list[Any], parsed),
                spec.datatype,
                [len(cells), *shape],
                f"input '{spec.name}'",
                may_hold_booleans=False,
            )
        except (ValueError, OverflowError, *ROW_ERRORS):
            return None

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
                # float() reads nan, inf and -inf (any case) and gives inf past float64; the datatype
                # then decides, as for JSON: FP inputs take them, integer inputs never get that far.
                values.append(int(cell) if spec.datatype.numpy.kind in "iu" else float(cell))
            except ValueError:
                kind = "an empty cell" if not cell.strip() else "a cell that is not a number"
                raise InvalidInput(f"{where}: expected {spec.datatype.v2} values, got {kind}") from None
        return array_from_json(values, spec.datatype, list(shape), where).reshape(shape)

    def is_csv_header(self, record: CsvRecord) -> bool:
        """Whether the first record names the columns: as the job says, else only when it cannot be data.

        Unambiguous means a numeric input and every cell a distinct name (a letter or _ first, printable,
        neither a number nor a missing-value marker such as NA, N.A. or NaT, whole or run into punctuation).
        Text and BOOL inputs have no unambiguous header: their headers must be declared."""
        if self.csv_header is not None:
            return self.csv_header
        (spec,) = self.specs
        if spec.datatype.v2 in ("BYTES", "BOOL") or record.error is not None or not record.cells:
            return False
        # Column names are distinct; a row of one repeated word ("NaT,NaT") is data gone wrong.
        distinct = len({cell.strip().lower() for cell in record.cells}) == len(record.cells)
        return distinct and all(_is_column_name(cell) for cell in record.cells)


def _is_column_name(cell: str) -> bool:
    name = cell.strip()
    if not name or not name.isprintable() or not (name[0].isalpha() or name[0] == "_"):
        return False
    lowered = name.lower()
    if re.sub(r"[^a-z0-9]", "", lowered) in _MISSING_MARKERS or _DAMAGED_MARKER.match(lowered):
        return False
    try:
        float(name)  # "inf", "nan" and "Infinity" start with a letter and are numbers
    except ValueError:
        return True
    return False


def _csv_parse_dtype(datatype: Datatype) -> np.dtype[Any]:
    if datatype.numpy.kind == "f":
        return np.dtype(np.float64)
    return np.dtype(np.uint64 if datatype.numpy == np.uint64 else np.int64)


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


def _not_json(exc: NotJson) -> str:
    if exc.got.startswith("bytes"):
        return "expected UTF-8 text, got other bytes"
    if exc.got.startswith("nothing"):
        return "expected a JSON value, got an empty line"
    return f"expected one JSON value per line, got {exc.got}"


def json_kind(value: Any) -> str:
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


class CsvRecord(NamedTuple):
    """One csv record: the line it starts on, its cells, and why it cannot be read (None: it can)."""

    line: int
    cells: list[str]
    error: str | None = None


def iter_csv_records(lines: Iterable[bytes], max_record_bytes: int | None = None) -> Iterator[CsvRecord]:
    """Records with the line each starts on; quoted cells may span lines, as the csv module allows.

    A record the csv reader refuses, or one with a line that is not UTF-8, is that record's error (the
    reader goes on at the next line). A record longer than `max_record_bytes` fails the job, as a long
    jsonl line does: it is most often a quoted cell that never closes, swallowing the rest of the file."""
    feed = _CsvFeed(lines, max_record_bytes)
    if max_record_bytes is not None:
        _allow_csv_fields(max_record_bytes)
    reader = csv.reader(feed)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield CsvRecord(feed.record_start, [], f"expected a csv record, got {_csv_problem(exc)}")
        else:
            if feed.record_not_utf8:
                yield CsvRecord(feed.record_start, [], "expected UTF-8 text, got other bytes")
            else:
                yield CsvRecord(feed.record_start, cells)
        feed.next_record()


class _CsvFeed:
    """The lines of a csv file as the csv reader wants them, counted per record."""

    def __init__(self, lines: Iterable[bytes], max_record_bytes: int | None) -> None:
        self._lines = iter(lines)
        self._max_record_bytes = max_record_bytes
        self._lines_read = 0
        self._record_bytes = 0
        self.record_start = 1
        self.record_not_utf8 = False

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._lines_read += 1
        self._record_bytes += len(line) + 1
        if self._max_record_bytes is not None and self._record_bytes > self._max_record_bytes:
            raise MalformedJobInput(
                f"input.csv: the record starting at line {self.record_start} is longer than "
                f"{self._max_record_bytes} bytes (MAAS_MAX_REQUEST_BYTES); a quoted cell may lack its "
                "closing quote"
            )
        try:
            # The csv module wants line endings back: a quoted cell may hold a newline.
            return line.decode("utf-8") + "\n"
        except UnicodeDecodeError:
            self.record_not_utf8 = True
            return line.decode("utf-8", "replace") + "\n"

    def next_record(self) -> None:
        self.record_start = self._lines_read + 1
        self._record_bytes = 0
        self.record_not_utf8 = False


def _allow_csv_fields(max_record_bytes: int) -> None:
    # csv.field_size_limit is process-wide. It is only ever raised, to the record bound enforced above
    # (which also bounds every field): lowering it again would race with a reader in another thread, and a
    # higher limit only lets other readers take longer fields. Cells over MAAS_MAX_STRING_BYTES are then
    # each its line's error (check_string_lengths), as in jsonl.
    if csv.field_size_limit() <= max_record_bytes:
        csv.field_size_limit(max_record_bytes + 1)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "new-line character" in text:
        return "a carriage return inside an unquoted cell (quote the cell)"
    if "field larger than field limit" in text:
        return "a cell longer than the csv reader allows"
    return f"a record the csv reader refuses ({text[:120]})"


@dataclass(frozen=True, slots=True)
class NpyHeader:
    rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    # Where the data starts: the magic, the version, the header length and the header itself.
    data_offset: int = 0

    @property
    def row_bytes(self) -> int:
        return math.prod(self.row_shape) * self.dtype.itemsize


_NPY_VERSIONS = {(1, 0): (2, "latin1"), (2, 0): (4, "latin1"), (3, 0): (4, "utf-8")}
_NPY_HEADER_KEYS = {"descr", "fortran_order", "shape"}


def read_npy_header(stream: ByteStream, file_bytes: int | None = None) -> NpyHeader:
    """The header of a .npy stream, leaving the stream at the first data byte. Never unpickles.

    Read by hand rather than by np.lib.format, which reads a header of any declared length (4 GB) before
    checking it, and lets tokenize's errors escape. Every way a header can be wrong raises
    MalformedJobInput. With `file_bytes`, the data must be exactly rows x row bytes long: the header alone
    cannot be trusted with the row count."""
    reader = _ExactReader(stream)
    lead = reader.read(len(NPY_MAGIC) + 2)
    if len(lead) < len(NPY_MAGIC) + 2 or not lead.startswith(NPY_MAGIC):
        raise _npy_error(
            "expected a NumPy .npy file (starting with \\x93NUMPY and a version), got other bytes"
        )
    version = (lead[-2], lead[-1])
    if version not in _NPY_VERSIONS:
        raise _npy_error(f"expected format version 1.0, 2.0 or 3.0, got {version[0]}.{version[1]}")
    length_bytes, encoding = _NPY_VERSIONS[version]
    length_field = reader.read(length_bytes)
    if len(length_field) < length_bytes:
        raise _npy_error("the file ends inside its header")
    header_length = int.from_bytes(length_field, "little")
    if header_length > MAX_NPY_HEADER_BYTES:
        raise _npy_error(
            f"expected a header of at most {MAX_NPY_HEADER_BYTES} bytes (numpy's limit), "
            f"got one declaring {header_length}"
        )
    raw = reader.read(header_length)
    if len(raw) < header_length:
        raise _npy_error("the file ends inside its header")
    fields = _npy_header_fields(raw, encoding)
    shape, fortran_order, dtype = (
        _npy_shape(fields["shape"]),
        fields["fortran_order"],
        _npy_dtype(fields["descr"]),
    )
    if not isinstance(fortran_order, bool):
        raise _npy_error(f"expected fortran_order True or False, got a {type(fortran_order).__name__}")
    if not shape:
        raise _npy_error("expected an array of rows [rows, ...], got a 0-d array")
    if fortran_order and len(shape) > 1:
        raise _npy_error("expected C (row-major) order, got Fortran order; save np.ascontiguousarray(rows)")
    header = NpyHeader(
        rows=shape[0], row_shape=shape[1:], dtype=dtype, data_offset=len(lead) + length_bytes + header_length
    )
    if header.rows and not header.row_bytes:
        raise _npy_error(
            f"expected rows of at least one element, got shape {list(shape)}: the file's size cannot "
            "confirm how many empty rows it holds"
        )
    if file_bytes is not None and header.rows * header.row_bytes != file_bytes - header.data_offset:
        raise _npy_error(
            f"the header promises {header.rows} rows of {header.row_bytes} bytes, the file holds "
            f"{file_bytes - header.data_offset} bytes of data"
        )
    return header


def _npy_error(problem: str) -> MalformedJobInput:
    return MalformedJobInput(f"input.npy: {problem}")


def _npy_header_fields(raw: bytes, encoding: str) -> dict[str, Any]:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise _npy_error(f"expected a header of {encoding} text, got other bytes") from None
    try:
        fields = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        raise _npy_error("expected a header that is a Python dict literal, got something else")
    if set(fields) != _NPY_HEADER_KEYS:
        raise _npy_error(f"expected a header with the keys {sorted(_NPY_HEADER_KEYS)}, got other keys")
    return fields


def _npy_shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(dim) is int for dim in value):
        raise _npy_error("expected a shape that is a tuple of integers, got something else")
    if len(value) > MAX_RANK:
        raise _npy_error(f"expected at most {MAX_RANK} dimensions, got {len(value)}")
    if any(dim < 0 for dim in value):
        raise _npy_error(f"expected a shape of non-negative dimensions, got {list(value)}")
    return value


def _npy_dtype(descr: Any) -> np.dtype[Any]:
    if isinstance(descr, list):
        raise _npy_error("expected numbers or fixed-width strings, got a structured dtype")
    if not isinstance(descr, str):
        raise _npy_error(f"expected a dtype string as descr, got a {type(descr).__name__}")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, OverflowError, MemoryError, SyntaxError):
        raise _npy_error("expected numbers or fixed-width strings, got a dtype numpy does not know") from None
    if dtype.hasobject:
        raise _npy_error("expected numbers or fixed-width strings, got an object array (a pickle)")
    if dtype.kind not in "biufUS" or dtype.fields is not None or dtype.subdtype is not None:
        raise _npy_error(f"expected numbers or fixed-width strings, got dtype {str(dtype)[:64]}")
    if dtype.itemsize == 0:
        raise _npy_error(f"expected strings of at least one character, got the zero-width dtype {dtype}")
    return dtype


def npy_chunks(
    stream: ByteStream, header: NpyHeader, rows_per_chunk: int
) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """(first row number, rows) pieces of the array, read `rows_per_chunk` rows (at most NPY_CHUNK_BYTES)
    at a time."""
    reader = _ExactReader(stream)
    rows_per_read = max(1, min(rows_per_chunk, NPY_CHUNK_BYTES // max(header.row_bytes, 1)))
    done = 0
    while done < header.rows:
        count = min(rows_per_read, header.rows - done)
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
