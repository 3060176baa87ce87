"""Job inputs as outside testers write them: JSON's non-standard numbers, csv first lines that look like
headers and are not, cells past the csv module's limits. One rule for values on every path: FP inputs take
NaN, Infinity, -Infinity and numbers past float64 (as +-inf); integer and BOOL inputs refuse them."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from maas.service.job_csv import CsvDecoder, CsvRecord, iter_csv_records
from maas.service.job_jsonl import JsonlDecoder
from maas.service.job_rows import MalformedJobInput, RowChunk
from maas.service.json_values import NotJson, loads_json
from maas.signature import Signature, TensorSpec

HUGE_INTEGER = "1" + "0" * 5000  # past Python's 4,300-digit int() limit


def signature(datatype: str, shape: list[int]) -> Signature:
    return Signature(
        inputs=[TensorSpec(name="input", datatype=datatype, shape=shape)],
        outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1])],
    )


FP32_ROW = signature("FP32", [-1, 3])
TEXT = signature("BYTES", [-1])


def lines(*texts: str) -> list[bytes]:
    return [t.encode() for t in texts]


def rows_by_position(chunk: RowChunk) -> dict[int, np.ndarray]:
    return {
        position: batch.inputs["input"][index]
        for batch in chunk.batches
        for index, position in enumerate(batch.positions)
    }


# ---- one JSON reading for every event path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[NaN, Infinity, -Infinity]", [math.nan, math.inf, -math.inf]),
        (b"[1e400, -1e400, 1e-400]", [math.inf, -math.inf, 0.0]),
        (f"[{HUGE_INTEGER}, -{HUGE_INTEGER}]".encode(), [math.inf, -math.inf]),
        # Integers stay exact through 64 bits, and past them are floats whichever parser reads them.
        (b"[18446744073709551615, -9223372036854775808]", [2**64 - 1, -(2**63)]),
        (b"[18446744073709551616]", [float(2**64)]),
        (b"[18446744073709551616, NaN]", [float(2**64), math.nan]),
        (b"[-9223372036854775809, NaN]", [float(-(2**63) - 1), math.nan]),
        ("[1.5, NaN]", [1.5, math.nan]),  # text as well as bytes
    ],
)
def test_numbers_read_the_same_whichever_parser_takes_them(raw: bytes | str, expected: list[Any]) -> None:
    value = loads_json(raw)

    assert [type(v) for v in value] == [type(v) for v in expected]
    np.testing.assert_array_equal(np.asarray(value, dtype=object).astype(float), np.asarray(expected, float))


def test_duplicate_keys_keep_the_last_value_on_both_parsers() -> None:
    assert loads_json(b'{"a": 1, "a": 2}') == {"a": 2}
    assert loads_json(b'{"a": 1, "a": 2, "b": NaN}')["a"] == 2


@pytest.mark.parametrize(
    ("raw", "got"),
    [
        (b"", "nothing"),
        (b" \t\r", "nothing"),
        (b"\xff[1]", "bytes that are not UTF-8 text"),
        (b"[1, 2", "text that is not JSON"),
        (b"[1,]", "text that is not JSON"),
        (b"{'single': 1}", "text that is not JSON"),
        (b"[nan, inf]", "text that is not JSON"),  # JSON's spellings only: NaN, Infinity
        (b"[" * 100_000, "JSON nested too deep to read"),
        (b'{"a": ' * 50_000, "JSON nested too deep to read"),
    ],
)
def test_what_no_parser_reads_says_what_arrived(raw: bytes, got: str) -> None:
    with pytest.raises(NotJson) as raised:
        loads_json(raw)

    assert raised.value.got.startswith(got)


# ---- jsonl: the datatype decides


@pytest.mark.parametrize(
    ("datatype", "line", "outcome"),
    [
        ("FP32", "[NaN, 1]", [math.nan, 1]),
        ("FP32", "[Infinity, -Infinity]", [math.inf, -math.inf]),
        ("FP32", "[1e400, -1e400]", [math.inf, -math.inf]),
        ("FP32", f"[{HUGE_INTEGER}, 0]", [math.inf, 0]),
        ("FP64", "[NaN, -Infinity]", [math.nan, -math.inf]),
        ("FP16", "[Infinity, 1e400]", [math.inf, math.inf]),
        ("INT64", "[NaN, 1]", "expected INT64 values, got NaN or Infinity"),
        ("INT64", "[Infinity, 1]", "expected INT64 values, got NaN or Infinity"),
        ("INT64", "[1e400, 1]", "expected INT64 values, got NaN or Infinity"),
        ("INT64", f"[{HUGE_INTEGER}, 1]", "expected INT64 values, got NaN or Infinity"),
        ("INT32", "[-Infinity, 1]", "expected INT32 values, got NaN or Infinity"),
        ("UINT8", "[NaN, 1]", "expected UINT8 values, got NaN or Infinity"),
        ("BOOL", "[NaN, true]", "expected BOOL values, got NaN or Infinity"),
        ("BOOL", "[Infinity, false]", "expected BOOL values, got NaN or Infinity"),
    ],
)
def test_jsonl_fp_inputs_take_nan_and_infinity_and_others_refuse_them_as_a_line_error(
    datatype: str, line: str, outcome: list[float] | str
) -> None:
    good = "[true, false]" if datatype == "BOOL" else "[1, 2]"
    decoder = JsonlDecoder("m", signature(datatype, [-1, 2]))

    chunk = decoder.chunk(1, lines(good, line, good))

    rows = rows_by_position(chunk)
    assert sorted(rows) == ([0, 1, 2] if isinstance(outcome, list) else [0, 2])
    if isinstance(outcome, list):
        assert chunk.errors == {}
        np.testing.assert_array_equal(rows[1].astype(np.float64), outcome)
    else:
        assert chunk.errors == {1: f"input 'input'.data: {outcome}"}


def test_jsonl_lines_orjson_refuses_and_no_parser_reads_stay_line_errors_in_place() -> None:
    decoder = JsonlDecoder("m", FP32_ROW)

    chunk = decoder.chunk(
        1, [b"[1, 2, 3]", b"[NaN, 2, 3]", b"[" * 100_000, b"\xff", b"[1, 2, 3", b"[4, 5, 6]"]
    )

    assert chunk.errors == {
        2: "expected one JSON value per line, got JSON nested too deep to read",
        3: "expected UTF-8 text, got other bytes",
        4: "expected one JSON value per line, got text that is not JSON",
    }
    assert sorted(rows_by_position(chunk)) == [0, 1, 5]


def test_jsonl_text_with_a_lone_surrogate_is_refused_by_the_text_check() -> None:
    chunk = JsonlDecoder("m", TEXT).chunk(1, lines('"fine"', '"\\ud800"'))

    assert chunk.errors == {
        1: "input 'input'.data: expected valid Unicode text, got a lone surrogate in BYTES element 0"
    }


# ---- csv: which first line is a header


@pytest.mark.parametrize(
    ("first_line", "is_header"),
    [
        ("f0,f1,f2", True),
        ("price (usd),width_cm,_id", True),
        (" sepal length , petal width ,température", True),
        # data, or data that is wrong: never eaten
        ("1,2,3", False),
        ("NA,1,2", False),
        ("NA,NA,NA", False),
        ("n/a,null,None", False),
        ("nan,inf,-inf", False),
        ("NaN,Infinity,x", False),
        ("true,false,x", False),
        ("a\0b,c,d", False),
        ("f0,,f2", False),
        (",,", False),
        ("", False),
        ("#id,a,b", False),
        ("x,1,2", False),
        ("1e5,b,c", False),
        ('"f0\tf1",b,c', False),
        # missing-value markers as other tools spell them, or damaged (an outside review's cases)
        ("N.A.,N.A.", False),
        ("N.A.,x", False),
        ("undefined,undefined", False),
        ("undefined,x", False),
        ("NaT,NaT", False),
        ("NaT,x", False),
        ("NaN%,x", False),
        ("nan(0x1),a", False),
        ("#N/A,x", False),
        ("<NA>,x", False),
        ("x,x", False),  # a repeated name: data, not a header
        ("na_count,nan_rate,infected", True),  # names that merely start like a marker
    ],
)
def test_a_csv_first_line_is_a_header_only_when_every_cell_is_a_name(
    first_line: str, is_header: bool
) -> None:
    (record,) = iter_csv_records(lines(first_line))

    assert CsvDecoder("m", FP32_ROW).is_header(record) is is_header


@pytest.mark.parametrize("datatype", ["BYTES", "BOOL"])
def test_text_and_bool_inputs_have_no_guessed_header_only_a_declared_one(datatype: str) -> None:
    (record,) = iter_csv_records(lines("text"))
    model = signature(datatype, [-1])

    assert not CsvDecoder("m", model).is_header(record)
    assert CsvDecoder("m", model, csv_header=True).is_header(record)


@pytest.mark.parametrize(("declared", "line"), [(True, "1,2,3"), (True, "NA,1,2"), (False, "f0,f1,f2")])
def test_a_declared_header_setting_wins_over_the_guess(declared: bool, line: str) -> None:
    (record,) = iter_csv_records(lines(line))

    assert CsvDecoder("m", FP32_ROW, csv_header=declared).is_header(record) is declared


# ---- csv: values


def csv_chunk(model: Signature, *texts: str) -> RowChunk:
    return CsvDecoder("m", model).chunk(list(iter_csv_records(lines(*texts))))


def test_csv_fp_cells_take_nan_and_infinity_as_float_reads_them_on_the_fast_and_the_slow_path() -> None:
    special = ("nan,inf,-inf", "NaN,Infinity,-Infinity", "1e400,-1e400,1e-400")
    expected = np.array(
        [[math.nan, math.inf, -math.inf]] * 2 + [[math.inf, -math.inf, 0.0]], dtype=np.float32
    )

    fast = csv_chunk(FP32_ROW, *special)
    slow = csv_chunk(FP32_ROW, *special, "not,a,number")

    assert len(fast.batches) == 1 and fast.errors == {}
    np.testing.assert_array_equal(np.stack([rows_by_position(fast)[i] for i in range(3)]), expected)
    assert list(slow.errors) == [3]
    np.testing.assert_array_equal(np.stack([rows_by_position(slow)[i] for i in range(3)]), expected)


@pytest.mark.parametrize(
    ("datatype", "cell", "message"),
    [
        ("INT64", "nan", ": expected INT64 values, got a cell that is not a number"),
        ("INT64", "inf", ": expected INT64 values, got a cell that is not a number"),
        ("INT64", "1.5", ": expected INT64 values, got a cell that is not a number"),
        ("INT64", "1e400", ": expected INT64 values, got a cell that is not a number"),
        ("INT8", "300", ".data: expected INT8 values in [-128, 127], got some outside"),
        ("UINT8", "-1", ".data: expected UINT8 values in [0, 255], got some outside"),
        ("UINT64", "-1", ".data: expected UINT64 values in [0, 18446744073709551615], got some outside"),
        ("BOOL", "nan", ": expected BOOL values (true/false/1/0), got another value"),
        ("FP32", " ", ": expected FP32 values, got an empty cell"),
        ("FP32", "NA", ": expected FP32 values, got a cell that is not a number"),
    ],
)
def test_csv_cells_other_inputs_refuse_are_line_errors_alone_or_among_good_records(
    datatype: str, cell: str, message: str
) -> None:
    model = signature(datatype, [-1])
    good = "1"

    alone = csv_chunk(model, good, cell)
    among_bad = csv_chunk(model, good, cell, "x")

    assert alone.errors == {1: f"input 'input'{message}"}
    assert among_bad.errors[1] == alone.errors[1]
    assert sorted(rows_by_position(alone)) == [0]


def test_csv_numbers_past_a_narrow_type_get_the_same_answer_on_the_fast_and_the_slow_path() -> None:
    # numpy alone would parse "1e39" as FP32 inf without a word; the JSON rule decides instead.
    alone = csv_chunk(FP32_ROW, "1e39,0,0")
    among_bad = csv_chunk(FP32_ROW, "1e39,0,0", "x,y,z")

    assert alone.errors.get(0) == among_bad.errors.get(0)
    assert sorted(rows_by_position(alone)) == sorted(rows_by_position(among_bad))


# ---- csv: long cells and broken records


@pytest.fixture
def csv_field_limit() -> Iterator[None]:
    """csv.field_size_limit is process-wide: each test leaves it as it found it."""
    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


@pytest.mark.usefixtures("csv_field_limit")
def test_a_cell_past_the_csv_default_limit_is_read_and_one_past_the_string_limit_is_a_line_error() -> None:
    csv.field_size_limit(131_072)  # Python's default
    decoder = CsvDecoder("m", TEXT, max_string_bytes=262_144)
    texts = ["short", "a" * 200_000, "b" * 262_145, "é" * 140_000, '"quoted, ' + "c" * 200_000 + '"', "last"]

    chunk = decoder.chunk(list(iter_csv_records(lines(*texts), max_record_bytes=6 * 1024 * 1024)))

    too_long = (
        "input 'input': BYTES element 0 holds {} bytes, expected at most 262144 (MAAS_MAX_STRING_BYTES)"
    )
    assert chunk.errors == {
        2: too_long.format(262_145),
        3: too_long.format(280_000),
    }
    rows = rows_by_position(chunk)
    assert [len(rows[i]) for i in (0, 1, 4, 5)] == [5, 200_000, 200_008, 4]


@pytest.mark.usefixtures("csv_field_limit")
def test_the_process_wide_csv_field_limit_is_only_ever_raised() -> None:
    csv.field_size_limit(10**9)
    list(iter_csv_records(lines("a,b"), max_record_bytes=1000))
    assert csv.field_size_limit() == 10**9

    csv.field_size_limit(100)
    list(iter_csv_records(lines("a,b"), max_record_bytes=1000))
    assert csv.field_size_limit() == 1001


@pytest.mark.usefixtures("csv_field_limit")
def test_a_quote_that_never_closes_fails_the_job_at_the_record_limit_instead_of_reading_the_file() -> None:
    records = iter_csv_records(lines("1,2,3", '"4,5,6', *["7,8,9"] * 1000), max_record_bytes=600)

    assert next(records) == CsvRecord(1, ["1", "2", "3"])
    with pytest.raises(MalformedJobInput, match="the record starting at line 2 is longer than 600 bytes"):
        next(records)


def test_a_record_the_csv_reader_refuses_or_that_is_not_utf8_is_its_own_line_error() -> None:
    raw = [b"1,2,3", b"4,\r5,6", b"7,8,9", b"\xff\xfe,1,2", b'"a', b'\xff",1,2', b"10,11,12"]

    records = list(iter_csv_records(raw))

    assert records == [
        CsvRecord(1, ["1", "2", "3"]),
        CsvRecord(
            2, [], "expected a csv record, got a carriage return inside an unquoted cell (quote the cell)"
        ),
        CsvRecord(3, ["7", "8", "9"]),
        CsvRecord(4, [], "expected UTF-8 text, got other bytes"),
        CsvRecord(5, [], "expected UTF-8 text, got other bytes"),
        CsvRecord(7, ["10", "11", "12"]),
    ]
    chunk = CsvDecoder("m", FP32_ROW).chunk(records)
    assert chunk.lines == [1, 2, 3, 4, 5, 7]
    assert chunk.errors == {
        1: "expected a csv record, got a carriage return inside an unquoted cell (quote the cell)",
        3: "expected UTF-8 text, got other bytes",
        4: "expected UTF-8 text, got other bytes",
    }


# ---- fuzz: whatever the bytes, a line error or a failed job, never another exception


@pytest.mark.usefixtures("csv_field_limit")
@pytest.mark.parametrize("datatype", ["FP32", "INT8", "UINT64", "BOOL", "BYTES"])
def test_fuzzed_csv_and_jsonl_lines_only_ever_become_line_errors(datatype: str) -> None:
    rng = random.Random(f"events-{datatype}")
    pieces = [
        b"1",
        b"-2.5",
        b"nan",
        b"inf",
        b"1e400",
        b"NA",
        b"true",
        b'"',
        b",",
        b"\r",
        b"\0",
        b"\xff",
        b"\xc3\xa9",
        b"[",
        b"]",
        b"{",
        b"}",
        b":",
        b'"input"',
        b"NaN",
        b"Infinity",
        b" ",
        b"9" * 30,
        b"\\ud800",
    ]
    model = signature(datatype, [-1, 2])
    csv_decoder = CsvDecoder("m", model, max_string_bytes=64)
    jsonl_decoder = JsonlDecoder("m", model)
    for _ in range(200):
        raw = [
            b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 8))
        ]
        try:
            records = list(iter_csv_records(raw, max_record_bytes=4096))
        except MalformedJobInput:
            continue  # a quote left open past the record limit
        chunk = csv_decoder.chunk(records)
        assert len(chunk.errors) + sum(len(b.positions) for b in chunk.batches) == len(records)
        chunk = jsonl_decoder.chunk(1, raw)
        assert len(chunk.errors) + sum(len(b.positions) for b in chunk.batches) == len(raw)
