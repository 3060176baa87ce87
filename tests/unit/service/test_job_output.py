"""Output lines of a batch job: every datatype onnxruntime may return, as one JSON document per row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maas.service.job_output import encode_rows


def encoded(outputs: dict[str, np.ndarray]) -> list[dict[str, object]]:
    count = len(next(iter(outputs.values())))
    lines: list[bytes | None] = [None] * count
    encode_rows(outputs, list(range(count)), lines)
    assert all(line is not None for line in lines)
    return [json.loads(line or b"") for line in lines]


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int8, np.int32, np.longlong, np.uint64, np.bool_]
)
def test_numbers_of_every_type_round_trip(dtype: type[np.generic]) -> None:
    values = (
        (np.arange(12).reshape(3, 2, 2) % 2 == 1) if dtype is np.bool_ else np.arange(12).reshape(3, 2, 2)
    )
    array = np.asarray(values, dtype=dtype)

    rows = encoded({"out": array})

    assert [row["outputs"]["out"] for row in rows] == array.tolist()  # type: ignore[index]


def test_float32_is_written_with_its_own_shortest_digits_and_non_finite_values_as_null() -> None:
    array = np.array([[0.1, np.nan], [np.inf, -2.5]], dtype=np.float32)

    assert encoded({"p": array}) == [{"outputs": {"p": [0.1, None]}}, {"outputs": {"p": [None, -2.5]}}]


def test_big_endian_and_non_contiguous_arrays_and_scalar_rows() -> None:
    big_endian = np.arange(6, dtype=">f4").reshape(3, 2)
    strided = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    scalar_rows = np.array([7, 8, 9], dtype=np.int64)

    rows = encoded({"a": big_endian, "b": strided, "c": scalar_rows})

    assert rows[1] == {"outputs": {"a": [2.0, 3.0], "b": [4, 6], "c": 8}}
    assert list(rows[0]["outputs"]) == ["a", "b", "c"]  # type: ignore[call-overload]


def test_text_outputs_are_strings_even_when_onnxruntime_returns_bytes() -> None:
    array = np.array([["a", b"b\xc3\xa4"], ["c", "d"]], dtype=object)

    assert encoded({"labels": array})[0] == {"outputs": {"labels": ["a", "bä"]}}
