"""Decoding a batch job's input: lines, csv records and npy rows into row batches for a signature."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from maas.errors import InvalidInput
from maas.service.job_csv import CsvDecoder, CsvRecord, iter_csv_records
from maas.service.job_jsonl import JsonlDecoder
from maas.service.job_npy import npy_chunks, npy_rows_as, read_npy_header
from maas.service.job_rows import MalformedJobInput, max_rows_per_run, single_row_spec
from maas.service.job_streams import iter_lines
from maas.signature import Signature, TensorSpec

SINGLE = Signature(
    inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 3])],
    outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1, 1])],
)
TWO_INPUTS = Signature(
    inputs=[
        TensorSpec(name="ids", datatype="INT64", shape=[-1, -1]),
        TensorSpec(name="scale", datatype="FP32", shape=[-1]),
    ],
    outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1])],
)
TEXT = Signature(
    inputs=[TensorSpec(name="text", datatype="BYTES", shape=[-1])],
    outputs=[TensorSpec(name="embedding", datatype="FP32", shape=[-1, 4])],
)


def lines(*texts: str) -> list[bytes]:
    return [t.encode() for t in texts]


def test_agreeing_rows_become_one_batch() -> None:
    chunk = JsonlDecoder("m", SINGLE).chunk(1, lines("[1, 2, 3]", "[4, 5, 6]", '{"input": [7, 8, 9]}'))

    assert chunk.errors == {}
    (batch,) = chunk.batches
    assert batch.positions == [0, 1, 2]
    np.testing.assert_array_equal(batch.inputs["input"], np.arange(1, 10, dtype=np.float32).reshape(3, 3))
    assert batch.inputs["input"].dtype == np.float32


def test_each_bad_line_gets_its_own_message_and_the_rest_still_batch() -> None:
    chunk = JsonlDecoder("m", SINGLE).chunk(
        10, lines("[1, 2, 3]", "[1, 2]", "[true, 1, 2]", '"text"', '{"other": [1, 2, 3]}', "[4, 5, 6]", "nul")
    )

    assert chunk.errors == {
        1: "input 'input': expected a row of shape [3] (-1 = any size), got [2]",
        2: "input 'input'.data: expected FP32 values, got booleans",
        3: "input 'input': expected a row of shape [3] (-1 = any size), got []",
        4: "expected an object with the keys ['input'], got the keys ['other']",
        6: "expected one JSON value per line, got text that is not JSON",
    }
    assert [chunk.lines[position] for position in sorted(chunk.errors)] == [11, 12, 13, 14, 16]
    (batch,) = chunk.batches
    assert batch.positions == [0, 5]


def test_multi_input_rows_are_objects_and_rows_of_different_lengths_run_in_separate_batches() -> None:
    decoder = JsonlDecoder("m", TWO_INPUTS)

    chunk = decoder.chunk(
        1,
        lines(
            '{"ids": [1, 2], "scale": 0.5}',
            '{"ids": [3, 4, 5], "scale": 1}',
            '{"ids": [6, 7], "scale": 2}',
            "[1, 2]",
        ),
    )

    assert chunk.errors == {3: "expected an object with the keys ['ids', 'scale'], got a JSON array"}
    by_positions = {tuple(b.positions): b for b in chunk.batches}
    assert set(by_positions) == {(0, 2), (1,)}
    np.testing.assert_array_equal(by_positions[(0, 2)].inputs["ids"], [[1, 2], [6, 7]])
    assert by_positions[(0, 2)].inputs["ids"].dtype == np.int64
    np.testing.assert_array_equal(by_positions[(0, 2)].inputs["scale"], [0.5, 2.0])


def test_text_rows_are_strings() -> None:
    chunk = JsonlDecoder("m", TEXT).chunk(1, lines('"hello"', '"wörld"', "3"))

    assert list(chunk.batches[0].inputs["text"]) == ["hello", "wörld"]
    assert chunk.errors == {2: "input 'text'.data: expected BYTES values, got integers"}


def test_csv_and_npy_need_a_single_input_model() -> None:
    with pytest.raises(MalformedJobInput, match="csv jobs need a single-input model, use jsonl"):
        CsvDecoder("m", TWO_INPUTS)
    with pytest.raises(MalformedJobInput, match="npy jobs need a single-input model, use jsonl"):
        single_row_spec("m", TWO_INPUTS, "npy")


def test_csv_records_batch_in_numpy_and_bad_records_are_named() -> None:
    decoder = CsvDecoder("m", SINGLE)
    records = list(iter_csv_records(lines("a,b,c", "1,2,3", "4,,6", "7,8", "9,10,11")))
    assert decoder.is_header(records[0]) and not decoder.is_header(records[1])

    chunk = decoder.chunk(records[1:])

    assert chunk.errors == {
        1: "input 'input': expected FP32 values, got an empty cell",
        2: "input 'input': expected 3 values per record (shape [3]), got 2",
    }
    (batch,) = chunk.batches
    np.testing.assert_array_equal(batch.inputs["input"], [[1, 2, 3], [9, 10, 11]])


def test_csv_quoted_cells_may_span_lines_and_keep_their_first_line_number() -> None:
    records = list(iter_csv_records(lines('"first', 'second",x', "a,b")))

    assert records == [CsvRecord(1, ["first\nsecond", "x"]), CsvRecord(3, ["a", "b"])]


def test_lines_split_on_lf_and_crlf_without_a_final_newline_and_drop_a_bom() -> None:
    stream = io.BytesIO(b"\xef\xbb\xbfone\r\ntwo\n\nthree")

    assert list(iter_lines(stream, max_line_bytes=100, chunk_bytes=3)) == [b"one", b"two", b"", b"three"]


def test_a_line_longer_than_the_limit_fails_the_job_instead_of_filling_memory() -> None:
    with pytest.raises(MalformedJobInput, match="line 2 is longer than 16 bytes"):
        list(iter_lines(io.BytesIO(b"short\n" + b"x" * 100), max_line_bytes=16, chunk_bytes=8))


@pytest.mark.parametrize("chunk_bytes", [1, 5, 16, 17, 18, 40, 1024])
@pytest.mark.parametrize(
    "data",
    [b"short\n" + b"x" * 17 + b"\nafter\n", b"short\r\n" + b"x" * 17 + b"\r\nafter", b"short\n" + b"x" * 17],
    ids=["lf", "crlf", "last-line"],
)
def test_a_line_longer_than_the_limit_fails_the_job_wherever_the_reads_fall(
    chunk_bytes: int, data: bytes
) -> None:
    # A line one byte over: whether a read ends inside it or holds it whole, and as the last line too.
    lines = iter_lines(io.BytesIO(data), max_line_bytes=16, chunk_bytes=chunk_bytes)

    assert next(lines) == b"short"
    with pytest.raises(MalformedJobInput, match=r"^input: line 2 is longer than 16 bytes"):
        next(lines)


@pytest.mark.parametrize("chunk_bytes", [1, 5, 17, 18, 1024])
def test_a_line_at_the_limit_is_given_whatever_its_ending_and_the_reads(chunk_bytes: int) -> None:
    data = b"x" * 16 + b"\r\n" + b"y" * 16 + b"\n" + b"z" * 16

    lines = list(iter_lines(io.BytesIO(data), max_line_bytes=16, chunk_bytes=chunk_bytes))

    assert lines == [b"x" * 16, b"y" * 16, b"z" * 16]


def npy_bytes(array: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    buffer.seek(0)
    return buffer


def test_npy_rows_stream_in_chunks_and_cast_within_their_kind() -> None:
    rows = np.arange(30, dtype=np.float64).reshape(10, 3)
    stream = npy_bytes(rows)
    header = read_npy_header(stream)

    chunks = list(npy_chunks(stream, header, rows_per_chunk=4))

    assert [(first, len(part)) for first, part in chunks] == [(1, 4), (5, 4), (9, 2)]
    cast = npy_rows_as(chunks[0][1], SINGLE.inputs[0])
    assert cast.dtype == np.float32
    np.testing.assert_array_equal(cast, rows[:4])
    with pytest.raises(MalformedJobInput, match="expected INT64 values for input 'ids'"):
        npy_rows_as(chunks[0][1], TWO_INPUTS.inputs[0])


def test_npy_object_arrays_are_never_unpickled() -> None:
    stream = npy_bytes(np.array([{"a": 1}, None], dtype=object))

    with pytest.raises(MalformedJobInput, match="object array"):
        read_npy_header(stream)


def test_npy_that_ends_early_or_runs_long_is_malformed() -> None:
    full = npy_bytes(np.zeros((5, 3), dtype=np.float32)).getvalue()
    for data, message in (
        (full[:-4], "the header promises 5 rows, the file ends after 4"),
        (full + b"\0", "more"),
    ):
        stream = io.BytesIO(data)
        header = read_npy_header(stream)
        with pytest.raises(MalformedJobInput, match=message):
            list(npy_chunks(stream, header, rows_per_chunk=2))


def test_not_an_npy_file() -> None:
    with pytest.raises(MalformedJobInput, match=r"expected a NumPy \.npy file"):
        read_npy_header(io.BytesIO(pickle.dumps([1, 2, 3])))


def test_a_model_without_a_batch_dimension_cannot_run_jobs_and_a_fixed_batch_of_one_runs_row_by_row() -> None:
    scalar = Signature(inputs=[TensorSpec(name="x", datatype="FP32", shape=[3])], outputs=SINGLE.outputs)
    one = Signature(inputs=[TensorSpec(name="x", datatype="FP32", shape=[1, 3])], outputs=SINGLE.outputs)

    with pytest.raises(InvalidInput, match="batch jobs need a leading batch dimension of -1"):
        JsonlDecoder("m", scalar)
    assert max_rows_per_run(one, 512) == 1
    assert max_rows_per_run(SINGLE, 512) == 512
