"""Where a sharded job's input is cut: byte ranges that each start at a record, found with a few small
ranged reads, never by reading the input.

Each nominal cut (a multiple of the shard size) is moved to a record start near it:

- jsonl: to the byte after the first newline at or after the nominal offset minus one, so a cut that
  already follows a newline stays where it is.
- csv: a quoted cell may hold newlines, so a line start is not always a record start. From the first line
  start, the lines that follow are parsed twice with the csv reader the single path uses (job_csv): once
  as if a record starts there, once as if a quoted cell is open there. A line start is either one or the
  other, so the first line after which both parses stand at a record start is a proven record boundary.
  When they never agree in the window, the cut is where the likelier parse starts a record (the one whose
  records have the file's width; the first line start when nothing tells them apart), an assumption the
  merge verifies: a shard that ends elsewhere has the next one run again from its true start. Near the end
  of the input, an unclear cut is dropped instead.
- npy: rows are fixed-size, so the header alone places every cut, at multiples of the batch rows.

Reads are bounded per cut: a window starts small (a sixteenth of a shard, at most PLAN_WINDOW_BYTES) and
doubles while it must. A newline is looked for no further than one shard (beyond it, it is the next cut's
newline) nor past the longest line allowed (such a line fails the job whichever shard holds it). A csv
proof reads at most a quarter of a shard and never past the longest record, and stops at PLAN_WINDOW_BYTES
when the window holds no quote (only a quote can close a cell, so nothing further can prove the cut):
proving a cut is worth less than what a wrong guess costs, one shard run again.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import NamedTuple

from maas.service.job_csv import iter_csv_records
from maas.service.job_npy import NpyHeader, npy_rows_per_read
from maas.service.job_rows import JobInputChanged, MalformedJobInput

RangeReader = Callable[[int, int], bytes]
"""Bytes [start, end) of the input; shorter only at the end of the file. Called from several threads."""

# S3 takes at most 10,000 parts in the multipart upload that stitches the outputs, one or more per shard
# boundary; a Map of 10,000 items also stays well inside Step Functions' limits.
MAX_SHARDS = 10_000
# The largest first read at a cut: one small ranged GET finds a newline in almost every file.
PLAN_WINDOW_BYTES = 64 * 1024
# The smallest first read: smaller ones cost a request each and save nothing.
MIN_PLAN_WINDOW_BYTES = 1024
# Cuts are looked for this many at a time: each costs a ranged GET or a few, and the waits overlap.
PLAN_READ_CONCURRENCY = 16
_QUOTE = b'"'


class PlanInputChanged(JobInputChanged):
    """A ranged read returned fewer bytes than the input's size promises: the input changed while planning."""


@dataclass(frozen=True, slots=True)
class PlannedRange:
    """One shard's input bytes [start, end); `first_row` is the global row number of an npy shard's first row
    (jsonl and csv shards number their lines from 1)."""

    start: int
    end: int
    first_row: int = 1


def shard_size(input_bytes: int, wanted: int) -> int:
    """The shard size to plan with: `wanted`, or larger where `wanted` would make more than MAX_SHARDS."""
    return max(1, wanted, -(-input_bytes // MAX_SHARDS))


def plan_line_ranges(
    input_bytes: int,
    shard_bytes: int,
    read_range: RangeReader,
    *,
    max_line_bytes: int,
    concurrency: int = PLAN_READ_CONCURRENCY,
) -> list[PlannedRange]:
    """Ranges of a jsonl input that each start at a line start, about `shard_bytes` apart.

    A line longer than `max_line_bytes` gets no cut near it: the shard holding it fails the job, as the
    single path would."""
    _check_sizes(input_bytes, shard_bytes)
    window = _first_window_bytes(shard_bytes)
    reach = min(max_line_bytes + 1, shard_bytes)

    def cut_near(nominal: int) -> int | None:
        return _line_start_after(_Window(read_range, input_bytes, nominal - 1, window), reach)

    return _ranges(0, input_bytes, _cuts(input_bytes, shard_bytes, cut_near, concurrency))


def plan_csv_ranges(
    input_bytes: int,
    shard_bytes: int,
    read_range: RangeReader,
    *,
    max_record_bytes: int,
    concurrency: int = PLAN_READ_CONCURRENCY,
) -> list[PlannedRange]:
    """Ranges of a csv input that each start at a record start (proven, or assumed and verified by the
    merge), about `shard_bytes` apart. A quoted cell with newlines is never split where the window can see
    its end."""
    _check_sizes(input_bytes, shard_bytes)
    window = _first_window_bytes(shard_bytes)
    reach = min(max_record_bytes + 1, shard_bytes)
    proof_reach = min(max_record_bytes, max(window, shard_bytes // 4))

    @cache
    def columns() -> int | None:
        return _first_record_cells(_Window(read_range, input_bytes, 0, window), proof_reach, max_record_bytes)

    def cut_near(nominal: int) -> int | None:
        found = _Window(read_range, input_bytes, nominal - 1, window)
        line_start = _line_start_after(found, reach)
        if line_start is None:
            return None
        while True:
            block = found.after(line_start)
            proven = proven_csv_boundary(block, max_record_bytes=max_record_bytes)
            if proven is not None:
                return line_start + proven
            # Only a quote can close a cell, so a quote-free window proves nothing however far it grows:
            # past PLAN_WINDOW_BYTES its likely start is taken (the merge verifies it), and a plain csv
            # file costs one window a cut, not a quarter of every shard.
            quote_free = _QUOTE not in block and len(block) >= PLAN_WINDOW_BYTES
            if quote_free or not found.grow(line_start - found.start + proof_reach):
                if found.end >= input_bytes and _QUOTE in found.after(line_start):
                    # Less than a window is left, and quotes make it unclear: it is safer in the shard before.
                    return None
                likely = likely_csv_boundary(
                    found.after(line_start), max_record_bytes=max_record_bytes, columns=columns()
                )
                return line_start + likely

    return _ranges(0, input_bytes, _cuts(input_bytes, shard_bytes, cut_near, concurrency))


def plan_npy_ranges(header: NpyHeader, shard_bytes: int, batch_rows: int) -> list[PlannedRange]:
    """Row ranges of an npy input, each a whole number of the single path's reads (`batch_rows` rows, fewer
    when the rows are wide: job_npy.npy_rows_per_read), each read one batch, so that every row runs in the
    same batch as on the single path; at most `shard_bytes` unless one read is larger."""
    if batch_rows < 1:
        raise ValueError(f"expected batch rows of at least 1, got {batch_rows}")
    if shard_bytes < 1:
        raise ValueError(f"expected a shard size of at least 1 byte, got {shard_bytes}")
    if header.rows == 0:
        return []
    batch_rows = npy_rows_per_read(header.row_bytes, batch_rows)
    batches = max(1, shard_bytes // max(header.row_bytes * batch_rows, 1))
    # Never more shards than MAX_SHARDS, however small the batches.
    batches = max(batches, -(-header.rows // (MAX_SHARDS * batch_rows)))
    rows_per_shard = batches * batch_rows
    ranges: list[PlannedRange] = []
    for first in range(0, header.rows, rows_per_shard):
        last = min(first + rows_per_shard, header.rows)
        ranges.append(
            PlannedRange(
                start=header.data_offset + first * header.row_bytes,
                end=header.data_offset + last * header.row_bytes,
                first_row=first + 1,
            )
        )
    return ranges


def proven_csv_boundary(block: bytes, *, max_record_bytes: int) -> int | None:
    """The offset in `block` (which starts at a line start) of the first line start that is a record start
    whether or not a quoted cell was open at the block's start; None when the block cannot tell.

    Only the block's complete lines count (those a newline ends). The two parses are the single path's own
    reader (job_csv.iter_csv_records), so csv errors and multi-line cells end records exactly as there."""
    if _QUOTE not in block:
        # Inside a quoted cell only a quote can end it: without one the open-cell parse never finishes.
        return None
    line_starts, lines = _complete_lines(block)
    if not lines:
        return None
    as_record_start = {record.end for record in _records(lines, max_record_bytes)}
    for record in _records([_QUOTE + lines[0], *lines[1:]], max_record_bytes):
        if record.end in as_record_start:
            return line_starts[record.end]
    return None


def likely_csv_boundary(block: bytes, *, max_record_bytes: int, columns: int | None = None) -> int:
    """Where the first record in `block` (which starts at a line start) most likely starts when no boundary
    can be proven: 0, the block's start, unless the parse as if a quoted cell were open there reads the
    lines after that cell better (then it is the line after the cell). Better: more of those lines in
    records of the file's width (`columns`, the first record's cells; None: the most common width), then
    more cells a record.

    Both parses can stay out of step for good: in a file whose lines repeat a pattern of odd quote counts,
    or after a long cell whose closing quote the other parse takes for an opening one. The true parse reads
    the file's columns; the false one splits and joins them, or holds an open cell to the window's end.
    Still an assumption: the merge verifies it."""
    if _QUOTE not in block:
        return 0
    line_starts, lines = _complete_lines(block)
    as_record_start = list(_records(lines, max_record_bytes))
    inside_quoted_cell = list(_records([_QUOTE + lines[0], *lines[1:]], max_record_bytes)) if lines else []
    # The open-cell parse's first record is a cell's tail: only the lines after it are compared.
    if not inside_quoted_cell or inside_quoted_cell[0].end >= len(lines):
        return 0
    after_cell = inside_quoted_cell[0].end
    compared = len(lines) - after_cell
    open_cell = _fit(inside_quoted_cell[1:], columns, compared)
    record_start = _fit(
        [record for record in as_record_start if record.start >= after_cell], columns, compared
    )
    return line_starts[after_cell] if open_cell > record_start else 0


class _ParsedRecord(NamedTuple):
    """The lines the reader had consumed when it began and finished the record, and its cells (None: an
    error)."""

    start: int
    end: int
    cells: int | None


def _complete_lines(block: bytes) -> tuple[list[int], list[bytes]]:
    """The offsets of the block's complete lines (and of the byte after the last one), and the lines as
    job_streams.iter_lines hands them to the reader: without their \\n or \\r\\n."""
    raw_lines = block[: block.rfind(b"\n") + 1].split(b"\n")[:-1]
    line_starts = [0]
    for line in raw_lines:
        line_starts.append(line_starts[-1] + len(line) + 1)
    return line_starts, [line.removesuffix(b"\r") for line in raw_lines]


def _records(lines: Sequence[bytes], max_record_bytes: int) -> Iterator[_ParsedRecord]:
    """The records the csv reader finishes in `lines`, in order (one the lines end in is not finished)."""
    counted = _CountedLines(lines)
    start = 0
    try:
        # One byte over the bound: the open-cell parse carries the quote it was given.
        for record in iter_csv_records(counted, max_record_bytes + 1):
            if counted.exhausted:
                return
            yield _ParsedRecord(start, counted.consumed, None if record.error else len(record.cells))
            start = counted.consumed
    except MalformedJobInput:
        return


def _first_record_cells(window: _Window, reach: int, max_record_bytes: int) -> int | None:
    """How many cells the file's first record has (None: it is longer than `reach`, or an error)."""
    while True:
        _, lines = _complete_lines(window.data)
        first = next(_records(lines, max_record_bytes), None)
        if first is not None:
            return first.cells
        if not window.grow(reach):
            return None


def _fit(records: Sequence[_ParsedRecord], columns: int | None, lines: int) -> tuple[float, float]:
    """How well `records` read `lines` lines as the file's rows: the share of the lines in records of
    `columns` cells (None: the most common number), then the mean number of cells. Errors count as none."""
    widths: Counter[int] = Counter()
    for record in records:
        if record.cells is not None:
            widths[record.cells] += record.end - record.start
    if not widths:
        return (0.0, 0.0)
    width = columns if columns is not None else widths.most_common(1)[0][0]
    return (widths[width] / lines, sum(record.cells or 0 for record in records) / len(records))


class _CountedLines:
    """Lines handed out one at a time, counted, noting when the reader asked for one past the last."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = iter(lines)
        self.consumed = 0
        self.exhausted = False

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> bytes:
        try:
            line = next(self._lines)
        except StopIteration:
            self.exhausted = True
            raise
        self.consumed += 1
        return line


class _Window:
    """Input bytes from `start` on, read a window at a time; each further read doubles what is held."""

    def __init__(self, read_range: RangeReader, input_bytes: int, start: int, first_read: int) -> None:
        self._read_range = read_range
        self._first_read = first_read
        self.input_bytes = input_bytes
        self.start = start
        self.data = b""

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def after(self, offset: int) -> bytes:
        return self.data[offset - self.start :]

    def grow(self, limit: int) -> bool:
        """Read more, holding at most `limit` bytes; False when there is nothing more to read."""
        doubled = max(self._first_read, len(self.data))
        wanted = min(doubled, limit - len(self.data), self.input_bytes - self.end)
        if wanted <= 0:
            return False
        data = self._read_range(self.end, self.end + wanted)
        if len(data) != wanted:
            raise PlanInputChanged(
                f"input: expected {wanted} bytes at offset {self.end} of an input of {self.input_bytes} "
                f"bytes, got {len(data)}: it changed while the job was planned; upload it again as a new job"
            )
        self.data += data
        return True


def _line_start_after(window: _Window, reach: int) -> int | None:
    """The offset after the first newline at or after `window.start`, looking at most `reach` bytes ahead;
    None when there is none that close, or it ends the input."""
    searched = 0
    while True:
        newline = window.data.find(b"\n", searched)
        if newline >= 0:
            line_start = window.start + newline + 1
            return line_start if line_start < window.input_bytes else None
        searched = len(window.data)
        if not window.grow(reach):
            return None


def _cuts(
    input_bytes: int, shard_bytes: int, cut_near: Callable[[int], int | None], concurrency: int
) -> list[int | None]:
    nominal = list(range(shard_bytes, input_bytes, shard_bytes))
    if concurrency <= 1 or len(nominal) <= 1:
        return [cut_near(offset) for offset in nominal]
    with ThreadPoolExecutor(min(concurrency, len(nominal)), "plan") as pool:
        return list(pool.map(cut_near, nominal))


def _ranges(start: int, input_bytes: int, cuts: Iterable[int | None]) -> list[PlannedRange]:
    """Contiguous ranges from `start` to the end of the input; a cut that does not advance is dropped."""
    bounds = [start]
    for cut in cuts:
        if cut is not None and bounds[-1] < cut < input_bytes:
            bounds.append(cut)
    if input_bytes > start:
        bounds.append(input_bytes)
    return [PlannedRange(first, last) for first, last in pairwise(bounds)]


def _first_window_bytes(shard_bytes: int) -> int:
    return min(PLAN_WINDOW_BYTES, max(MIN_PLAN_WINDOW_BYTES, shard_bytes // 16))


def _check_sizes(input_bytes: int, shard_bytes: int) -> None:
    if input_bytes < 0:
        raise ValueError(f"expected an input size of at least 0 bytes, got {input_bytes}")
    if shard_bytes < 1:
        raise ValueError(f"expected a shard size of at least 1 byte, got {shard_bytes}")
    if math.ceil(input_bytes / shard_bytes) > MAX_SHARDS:
        raise ValueError(
            f"expected at most {MAX_SHARDS} shards, got a shard size of {shard_bytes} bytes for "
            f"{input_bytes} bytes (use shard_size)"
        )
