"""Planning a sharded job: every cut is a record start of the whole file, the ranges cover the input
exactly, and the planner reads only small windows of it."""

from __future__ import annotations

import io
import random
import threading
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pytest

from maas.errors import MaasError
from maas.service.job_csv import iter_csv_records
from maas.service.job_npy import NPY_CHUNK_BYTES, NpyHeader
from maas.service.job_plan import (
    MAX_SHARDS,
    PLAN_WINDOW_BYTES,
    PlanInputChanged,
    PlannedRange,
    plan_csv_ranges,
    plan_line_ranges,
    plan_npy_ranges,
    proven_csv_boundary,
    shard_size,
)
from maas.service.job_streams import iter_lines

MAX_RECORD = 6_000_000


@dataclass
class CountingReader:
    """The input as the planner sees it through ranged reads, counting what it asks for."""

    data: bytes
    reads: list[tuple[int, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, start: int, end: int) -> bytes:
        assert 0 <= start < end, f"expected a non-empty range, got [{start}, {end})"
        with self._lock:
            self.reads.append((start, end))
        return self.data[start:end]

    @property
    def bytes_read(self) -> int:
        return sum(end - start for start, end in self.reads)


def starts(ranges: list[PlannedRange]) -> list[int]:
    return [planned.start for planned in ranges]


def assert_covers(ranges: list[PlannedRange], first: int, size: int) -> None:
    assert ranges[0].start == first
    assert ranges[-1].end == size
    for before, after in pairwise(ranges):
        assert before.end == after.start
    assert all(planned.start < planned.end for planned in ranges)


def line_starts(data: bytes) -> list[int]:
    """Byte offset of each physical line (index 0 is line 1)."""
    offsets = [0]
    for line in data.split(b"\n")[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    return offsets


def csv_record_starts(data: bytes) -> set[int]:
    """Where the single path's csv reader starts each record of the whole file, in bytes."""
    offsets = line_starts(data)
    records = iter_csv_records(iter_lines(io.BytesIO(data), MAX_RECORD), MAX_RECORD)
    return {offsets[record.line - 1] for record in records}


# ---- shard size


@pytest.mark.parametrize(
    ("input_bytes", "wanted", "expected"),
    [
        (0, 64, 64),
        (1000, 64, 64),
        (64 * MAX_SHARDS, 64, 64),
        (64 * MAX_SHARDS + 1, 64, 65),
        (10**12, 64 * 1024**2, 10**8),
        (5, 0, 1),
    ],
)
def test_shard_size_keeps_the_shard_count_within_the_limit(
    input_bytes: int, wanted: int, expected: int
) -> None:
    assert shard_size(input_bytes, wanted) == expected


def test_a_shard_size_that_makes_too_many_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="expected at most 10000 shards"):
        plan_line_ranges(MAX_SHARDS + 1, 1, CountingReader(b"\n" * (MAX_SHARDS + 1)), max_line_bytes=10)


# ---- jsonl


@pytest.mark.parametrize(
    ("data", "shard_bytes", "expected_starts"),
    [
        pytest.param(b"aaa\nbbb\nccc\n", 4, [0, 4, 8], id="cuts-after-newlines-stay"),
        pytest.param(b"aaa\nbbb\nccc\n", 3, [0, 4, 8], id="cuts-mid-line-move-to-the-next-line"),
        pytest.param(b"a\n" + b"x" * 20 + b"\nb\n", 4, [0, 23], id="a-long-line-swallows-its-cuts"),
        pytest.param(b"aaa\nbbbbbbbbbbbb", 5, [0], id="no-newline-before-the-end-no-cut"),
        pytest.param(b"aaaa\n", 2, [0], id="a-newline-ending-the-file-makes-no-empty-range"),
        pytest.param(b"\n\n\n\n", 1, [0, 1, 2, 3], id="empty-lines"),
        pytest.param(b"a\r\nb\r\nc\r\n", 2, [0, 3, 6], id="crlf"),
    ],
)
def test_jsonl_cuts_at_the_first_line_start_at_or_after_each_nominal_offset(
    data: bytes, shard_bytes: int, expected_starts: list[int]
) -> None:
    ranges = plan_line_ranges(len(data), shard_bytes, CountingReader(data), max_line_bytes=MAX_RECORD)

    assert starts(ranges) == expected_starts
    assert_covers(ranges, 0, len(data))
    assert all(planned.first_row == 1 for planned in ranges)


def test_an_empty_input_has_no_ranges() -> None:
    assert plan_line_ranges(0, 10, CountingReader(b""), max_line_bytes=10) == []


def test_random_jsonl_files_cut_exactly_at_the_next_line_start() -> None:
    rng = random.Random(22)
    for _ in range(300):
        data = b"".join(b"x" * rng.choice([0, 1, 5, 40, 300]) + b"\n" for _ in range(rng.randint(1, 80)))
        if rng.random() < 0.3:
            data += b"tail without newline"
        shard_bytes = rng.randint(1, 700)
        if -(-len(data) // shard_bytes) > MAX_SHARDS:
            continue
        ranges = plan_line_ranges(
            len(data),
            shard_bytes,
            CountingReader(data),
            max_line_bytes=MAX_RECORD,
            concurrency=rng.choice([1, 4]),
        )

        offsets = line_starts(data)
        cuts = {
            next((offset for offset in offsets if offset >= nominal), len(data))
            for nominal in range(shard_bytes, len(data), shard_bytes)
        }
        expected = sorted({0} | {cut for cut in cuts if cut < len(data)})
        assert starts(ranges) == expected, (data, shard_bytes)
        assert_covers(ranges, 0, len(data))


def test_a_line_longer_than_allowed_gets_no_cut_the_next_line_start_does() -> None:
    # Given a nominal cut at 10,000 inside a 5,000-byte line, and lines of at most 1,000 bytes allowed
    short = b"s" * 99 + b"\n"
    data = short * 99 + b"L" * 5_000 + b"\n" + short * 200
    long_line_start = 99 * 100

    allowed_short = plan_line_ranges(len(data), 10_000, CountingReader(data), max_line_bytes=1_000)
    allowed_long = plan_line_ranges(len(data), 10_000, CountingReader(data), max_line_bytes=10_000)

    # Then the cut is not made (the shard holding the line fails the job) or lands after the line
    after_long_line = long_line_start + 5_001
    assert starts(allowed_short) == [0, after_long_line + 5_100, after_long_line + 15_100]
    assert starts(allowed_long) == [0, after_long_line, after_long_line + 5_100, after_long_line + 15_100]


def test_a_window_without_a_newline_grows_until_it_finds_one() -> None:
    # Given lines of 200 KiB: a first window of 64 KiB holds no newline
    data = (b"x" * (200 * 1024) + b"\n") * 20
    reader = CountingReader(data)

    ranges = plan_line_ranges(len(data), 1024 * 1024, reader, max_line_bytes=MAX_RECORD, concurrency=1)

    assert all(data[planned.start - 1 : planned.start] == b"\n" for planned in ranges[1:])
    assert len(ranges) == 4
    # A few doubling reads per cut, never the whole input
    assert len(reader.reads) <= 3 * 4
    assert reader.bytes_read < len(data) / 2


def test_the_planner_reads_a_small_fraction_of_a_large_input() -> None:
    rng = random.Random(7)
    lines = [b'{"input": [' + b"1.5, " * rng.randint(5, 60) + b"2]}\n" for _ in range(500)]
    data = b"".join(lines) * 256  # about 32 MiB
    reader = CountingReader(data)

    ranges = plan_line_ranges(len(data), 4 * 1024 * 1024, reader, max_line_bytes=MAX_RECORD)

    assert len(ranges) == -(-len(data) // (4 * 1024 * 1024))
    assert len(reader.reads) == len(ranges) - 1
    assert reader.bytes_read <= (len(ranges) - 1) * PLAN_WINDOW_BYTES
    assert reader.bytes_read < len(data) / 50


def test_an_input_that_shrinks_while_planning_fails_the_job_saying_so() -> None:
    data = b"x" * 100 + b"\n" + b"y" * 100

    with pytest.raises(PlanInputChanged) as raised:
        plan_line_ranges(len(data) + 50, 50, CountingReader(data), max_line_bytes=MAX_RECORD, concurrency=1)

    # A MaasError: the plan step writes it into the job's status as it is, not as a failure of its own.
    assert isinstance(raised.value, MaasError) and raised.value.message == (
        "input: expected 50 bytes at offset 199 of an input of 251 bytes, got 2: it changed while the job "
        "was planned; upload it again as a new job"
    )


# ---- csv


def csv_plan(data: bytes, shard_bytes: int, reader: CountingReader | None = None) -> list[PlannedRange]:
    return plan_csv_ranges(
        len(data), shard_bytes, reader or CountingReader(data), max_record_bytes=MAX_RECORD
    )


def assert_cuts_are_record_starts(data: bytes, ranges: list[PlannedRange]) -> None:
    assert_covers(ranges, 0, len(data))
    records = csv_record_starts(data)
    for planned in ranges:
        assert planned.start in records, f"a cut at byte {planned.start} is inside a record"


def test_a_quote_free_csv_is_cut_at_line_starts() -> None:
    data = b"a,b,c\n" + b"1,2,3\n" * 1000

    ranges = csv_plan(data, 600)

    assert starts(ranges) == list(range(0, len(data), 600))
    assert_cuts_are_record_starts(data, ranges)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(b'7,"line one\nline two\nline three",x\n', id="multi-line-quoted-cell"),
        pytest.param(b'7,"say ""hi""\nthen ""bye""\n""",x\n', id="escaped-quotes-across-lines"),
        pytest.param(b'7,"a, b\r\nc, d\r\n",x\r\n', id="commas-and-crlf-inside-a-cell"),
        pytest.param(b'"\nstarts with a newline",x\n', id="cell-opening-on-its-own-line"),
        pytest.param(b'7,"""\n"""\n', id="a-cell-of-quotes-and-a-newline"),
    ],
)
def test_a_quoted_cell_with_newlines_is_never_split(record: bytes) -> None:
    # Given records that each hold a multi-line quoted cell, and every possible nominal cut inside them
    data = b"id,text,tag\n" + record * 20
    for shard_bytes in range(2, 3 * len(record)):
        ranges = csv_plan(data, shard_bytes)

        assert_cuts_are_record_starts(data, ranges)


def long_cell_input(shard_bytes: int, before_end: int) -> tuple[bytes, int]:
    """A 600 KiB quoted cell of many quote-free lines whose end lies `before_end` bytes past the first
    nominal cut; the input and where the record after the cell starts."""
    cell = b'"' + b"long text, with commas\n" * (600 * 1024 // 23) + b'"'
    before = b"1,short\n" * ((shard_bytes - len(cell) + before_end) // 8)
    data = before + b"2," + cell + b"\n" + b"3,after\n" * 100_000
    return data, data.index(b"3,after")


def test_a_cut_near_the_end_of_a_long_quoted_cell_moves_past_the_cell() -> None:
    # Given a nominal cut 40 KiB before the end of a 600 KiB quoted cell: its closing quote is in the window
    shard_bytes = 1024 * 1024
    data, cell_end = long_cell_input(shard_bytes, 40 * 1024)

    ranges = csv_plan(data, shard_bytes)

    # Then the cut is proven after the cell, not assumed at the first line start
    assert starts(ranges)[1] == cell_end
    assert_cuts_are_record_starts(data, ranges)


def test_a_cut_deep_in_a_quote_free_stretch_is_assumed_after_one_window_and_left_to_the_merge() -> None:
    # Given a nominal cut 200 KiB before the end of a quote-free 600 KiB quoted cell
    shard_bytes = 1024 * 1024
    data, cell_end = long_cell_input(shard_bytes, 200 * 1024)
    reads: list[tuple[int, int]] = []

    def read_range(start: int, end: int) -> bytes:
        reads.append((start, end))
        return data[start:end]

    ranges = plan_csv_ranges(len(data), shard_bytes, read_range, max_record_bytes=6 * 1024 * 1024)

    # Then no window can prove a cut there, and none grows past PLAN_WINDOW_BYTES looking for a quote: the
    # first line start is assumed (inside the cell, so the merge's check that shard 1 starts where shard 0
    # ended reruns it from the cell's end)
    first_cut = starts(ranges)[1]
    assert shard_bytes <= first_cut < cell_end
    assert data[first_cut - 1 : first_cut] == b"\n"
    near_the_cut = [(start, end) for start, end in reads if start < cell_end and end > shard_bytes - 1]
    assert sum(end - start for start, end in near_the_cut) <= 2 * PLAN_WINDOW_BYTES


def test_a_csv_error_ends_a_record_at_its_line_as_in_the_single_path() -> None:
    # A carriage return inside an unquoted cell is a csv.Error: the record ends at that line
    data = b"a,b\n" + (b'1,x\ry\n2,"q\nr"\n3,z\n') * 40
    for shard_bytes in range(3, 60):
        assert_cuts_are_record_starts(data, csv_plan(data, shard_bytes))


def random_cell(rng: random.Random) -> bytes:
    kind = rng.random()
    word = bytes(rng.choice(b"abcxyz019 .-") for _ in range(rng.randint(0, 12)))
    if kind < 0.35:
        return word
    if kind < 0.5:
        return b"%d.%d" % (rng.randint(-99, 999), rng.randint(0, 99))
    parts = [word]
    for _ in range(rng.randint(0, 4)):
        parts.append(rng.choice([b"\n", b"\r\n", b",", b'""', b"\n\n", b'""\n']))
        parts.append(bytes(rng.choice(b"abc, ") for _ in range(rng.randint(0, 8))))
    if kind < 0.97:
        return b'"' + b"".join(parts) + b'"'
    # A stray quote inside an unquoted cell is a literal character (the reader is not strict)
    return b"w" + word + b'"' + word


def random_csv(rng: random.Random) -> bytes:
    ending = rng.choice([b"\n", b"\r\n"])
    columns = rng.randint(1, 5)
    records = [
        b",".join(random_cell(rng) for _ in range(columns)) + (ending if rng.random() < 0.9 else b"\n")
        for _ in range(rng.randint(1, 120))
    ]
    data = b"".join(records)
    return data if rng.random() < 0.8 else data.removesuffix(ending)


def test_random_csv_files_are_cut_only_at_record_starts_of_the_whole_file() -> None:
    rng = random.Random(2024)
    proven_past_line_start = 0
    for _ in range(400):
        data = random_csv(rng)
        shard_bytes = rng.randint(1, max(2, len(data) // 3))
        if -(-len(data) // shard_bytes) > MAX_SHARDS:
            continue

        ranges = csv_plan(data, shard_bytes)

        assert_cuts_are_record_starts(data, ranges)
        proven_past_line_start += sum(
            data[planned.start - 2 : planned.start - 1] == b'"' for planned in ranges
        )
    assert proven_past_line_start > 0


def test_a_quote_free_csv_reads_bounded_windows() -> None:
    # Nothing proves a cut in a quote-free file: the window grows to a quarter shard, then the first line
    # start is taken (and verified by the merge)
    data = b"1.0,2.0,3.0\n" * 2_000_000  # 24 MB
    reader = CountingReader(data)

    ranges = csv_plan(data, 4 * 1024 * 1024, reader)

    assert len(ranges) == -(-len(data) // (4 * 1024 * 1024))
    assert all(data[planned.start - 1 : planned.start] == b"\n" for planned in ranges[1:])
    assert reader.bytes_read <= (len(ranges) - 1) * 1024 * 1024 + len(ranges) * PLAN_WINDOW_BYTES


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(b"1,2\n3,4\n", None, id="quote-free-cannot-tell"),
        pytest.param(b'1,"a"\n3,4\n', 6, id="balanced-quotes-agree-after-the-line"),
        pytest.param(b'x\ny",1\n2,3\n', 7, id="the-open-cell-closes-on-line-two"),
        pytest.param(b'1,"a\nb"\n', 8, id="agreement-at-the-end-of-the-block"),
        pytest.param(b'1,"a\nb', None, id="the-open-cell-never-finishes"),
        pytest.param(b'1,"a\nb"\n2,3\n4,5', 8, id="partial-last-line-is-not-needed"),
        pytest.param(b'1,"a"', None, id="no-complete-line"),
    ],
)
def test_proven_csv_boundary(block: bytes, expected: int | None) -> None:
    assert proven_csv_boundary(block, max_record_bytes=MAX_RECORD) == expected


# ---- npy


def npy_header(rows: int, row_shape: tuple[int, ...] = (3,), dtype: str = "<f4") -> NpyHeader:
    return NpyHeader(rows=rows, row_shape=row_shape, dtype=np.dtype(dtype), data_offset=128)


@pytest.mark.parametrize(
    ("rows", "shard_bytes", "batch_rows", "expected_first_rows"),
    [
        pytest.param(100, 12 * 30, 8, [1, 25, 49, 73, 97], id="largest-multiple-of-the-batch"),
        pytest.param(100, 12 * 5, 8, list(range(1, 101, 8)), id="at-least-one-batch"),
        pytest.param(10, 10**9, 4, [1], id="one-shard"),
        pytest.param(1, 1, 1, [1], id="one-row"),
    ],
)
def test_npy_shards_are_whole_batches_of_rows(
    rows: int, shard_bytes: int, batch_rows: int, expected_first_rows: list[int]
) -> None:
    header = npy_header(rows)

    ranges = plan_npy_ranges(header, shard_bytes, batch_rows)

    assert [planned.first_row for planned in ranges] == expected_first_rows
    assert_covers(ranges, header.data_offset, header.data_offset + rows * header.row_bytes)
    for planned in ranges:
        assert planned.start == header.data_offset + (planned.first_row - 1) * header.row_bytes
        assert (
            planned.end
            == planned.start + (planned.end - planned.start) // header.row_bytes * header.row_bytes
        )


def test_npy_shards_of_wide_rows_are_whole_reads_of_the_single_path() -> None:
    # 3 x 96 x 96 float32 images, 110,592 bytes a row: the single path reads (and runs) 151 rows at a time,
    # not the 512 batch rows asked for, so the shards cut at multiples of 151.
    header = npy_header(1000, row_shape=(3, 96, 96))
    per_read = NPY_CHUNK_BYTES // header.row_bytes
    assert per_read == 151

    ranges = plan_npy_ranges(header, 64 * 2**20, 512)

    assert [planned.first_row for planned in ranges] == [1, 1 + 4 * per_read]
    assert_covers(ranges, header.data_offset, header.data_offset + 1000 * header.row_bytes)


def test_npy_shards_never_exceed_the_shard_limit() -> None:
    header = npy_header(3 * MAX_SHARDS * 4, row_shape=(), dtype="<i1")

    ranges = plan_npy_ranges(header, 1, 4)

    assert len(ranges) <= MAX_SHARDS
    assert all((planned.first_row - 1) % 4 == 0 for planned in ranges)


def test_an_npy_input_without_rows_has_no_ranges() -> None:
    assert plan_npy_ranges(npy_header(0), 100, 4) == []


def test_npy_batch_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expected batch rows of at least 1, got 0"):
        plan_npy_ranges(npy_header(10), 100, 0)
