"""csv job input: records read from lines, the header rule, and cells decoded into row batches.

One record per row, its cells the row's values in row-major order; single-input models only. The first
record is a header (and gets no output line) when the job says so (`csv_header`), or, when it does not,
only when it is unambiguous: a numeric input and every cell a name, never a number, an empty cell or a
missing-value marker such as NA. Any other first record is data.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from maas.datatypes import Datatype
from maas.errors import InvalidInput
from maas.protocol.tensor_codec import array_from_json, check_string_lengths
from maas.service.job_rows import (
    LINE_FIELD,
    ROW_ERRORS,
    MalformedJobInput,
    RowBatch,
    RowChunk,
    RowGroups,
    RowSpec,
    single_row_spec,
)
from maas.signature import Signature

# Cells that mean "no value" in the tools that write csv files (pandas' defaults): data, never a header.
# Missing-value words as spreadsheets, R, pandas and JavaScript write them, compared with their
# punctuation taken out ("N.A.", "#N/A" and "<NA>" are all "na").
_MISSING_MARKERS = frozenset(
    ("na", "nan", "null", "none", "nil", "nat", "missing", "undefined", "true", "false", "inf", "infinity")
)
# A marker run into punctuation ("NaN%", "nan(0x1)", "null;") is a damaged value, not a column's name.
_DAMAGED_MARKER = re.compile(r"(?:n/?a|nan|null|none|nil|nat|inf|infinity|undefined|missing)[^a-z0-9_ ]")


class CsvRecord(NamedTuple):
    """One csv record: the line it starts on, its cells, and why it cannot be read (None: it can)."""

    line: int
    cells: list[str]
    error: str | None = None


class CsvDecoder:
    """Decodes chunks of csv records for one single-input model."""

    def __init__(
        self,
        model: str,
        signature: Signature,
        *,
        max_string_bytes: int | None = None,
        csv_header: bool | None = None,
    ) -> None:
        self.spec = single_row_spec(model, signature, "csv")
        # Each text element's UTF-8 bytes (MAAS_MAX_STRING_BYTES); None: unbounded.
        self.max_string_bytes = max_string_bytes
        # Whether the first record is a header, as the job says; None: only when unambiguous.
        self.csv_header = csv_header

    def chunk(self, records: Sequence[CsvRecord]) -> RowChunk:
        spec = self.spec
        chunk = RowChunk(lines=[record.line for record in records])
        if spec.datatype.v2 not in ("BYTES", "BOOL") and not any(record.error for record in records):
            stacked = self._numbers(spec, [record.cells for record in records])
            if stacked is not None:
                chunk.batches.append(RowBatch(list(range(len(records))), {spec.name: stacked}))
                return chunk
        groups = RowGroups()
        for position, record in enumerate(records):
            try:
                if record.error is not None:
                    raise InvalidInput(record.error)
                groups.add(position, {spec.name: self.row(record.cells)})
            except ROW_ERRORS as exc:
                chunk.fail(position, exc.message)
        chunk.batches += groups.batches()
        return chunk

    def _numbers(self, spec: RowSpec, cells: list[list[str]]) -> npt.NDArray[Any] | None:
        """Every record at once, parsed in numpy and checked as JSON numbers are; None: some record is bad.

        Parsed wide (float64, int64) and then cast with the JSON checks, so a value the row-by-row path
        refuses (1e39 for FP32, 300 for INT8) is never quietly taken here."""
        try:
            parsed = np.array(cells, dtype=_parse_dtype(spec.datatype))
            if parsed.ndim != 2:
                return None
            shape = _row_shape(spec, parsed.shape[1])
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

    def row(self, record: list[str]) -> npt.NDArray[Any]:
        spec = self.spec
        where = f"input '{spec.name}'"
        shape = _row_shape(spec, len(record))
        if spec.datatype.v2 == "BYTES":
            if self.max_string_bytes is not None:
                check_string_lengths(record, where, self.max_string_bytes)
            return np.array(record, dtype=object).reshape(shape)
        if spec.datatype.v2 == "BOOL":
            return np.array([_bool(cell, where) for cell in record], dtype=bool).reshape(shape)
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

    def is_header(self, record: CsvRecord) -> bool:
        """Whether the first record names the columns: as the job says, else only when it cannot be data.

        Unambiguous means a numeric input and every cell a distinct name (a letter or _ first, printable,
        neither a number nor a missing-value marker such as NA, N.A. or NaT, whole or run into punctuation).
        Text and BOOL inputs have no unambiguous header: their headers must be declared."""
        if self.csv_header is not None:
            return self.csv_header
        if self.spec.datatype.v2 in ("BYTES", "BOOL") or record.error is not None or not record.cells:
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


def _parse_dtype(datatype: Datatype) -> np.dtype[Any]:
    if datatype.numpy.kind == "f":
        return np.dtype(np.float64)
    return np.dtype(np.uint64 if datatype.numpy == np.uint64 else np.int64)


def _row_shape(spec: RowSpec, cells: int) -> tuple[int, ...]:
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


def _bool(cell: str, where: str) -> bool:
    text = cell.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InvalidInput(f"{where}: expected BOOL values (true/false/1/0), got another value")


# ---- records


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
            raise MalformedJobInput.at_line(
                f"input.csv: the record starting at line {LINE_FIELD} is longer than "
                f"{self._max_record_bytes} bytes (MAAS_MAX_REQUEST_BYTES); a quoted cell may lack its "
                "closing quote",
                self.record_start,
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
