"""npy job input: a hand-written reader of the .npy header, and the array's rows read in bounded chunks.

One array of shape [rows, ...row]; single-input models only. Only plain numbers and fixed-width strings:
object arrays (pickles), structured and zero-width dtypes are refused, and the header's row count must
account for the file's size exactly.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.datatypes import BY_V2
from maas.errors import PayloadTooLarge
from maas.protocol.tensor_codec import MAX_RANK, check_string_lengths
from maas.service.job_rows import MalformedJobInput, RowBatch, RowChunk
from maas.service.job_streams import ByteStream, ExactReader
from maas.signature import TensorSpec

NPY_MAGIC = b"\x93NUMPY"
# numpy's own bound on a header it did not write (np.lib.format._MAX_HEADER_SIZE); checked before reading.
MAX_NPY_HEADER_BYTES = 10_000
# The most of an npy file read (and held) at once, whatever the model's batch size.
NPY_CHUNK_BYTES = 16 * 1024 * 1024


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
    reader = ExactReader(stream)
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


def npy_rows_per_read(row_bytes: int, rows_per_chunk: int) -> int:
    """Rows one read of an npy input takes, and so one batch: `rows_per_chunk`, fewer when that would be
    more than NPY_CHUNK_BYTES (wide rows, images). A sharded job cuts at multiples of it."""
    return max(1, min(rows_per_chunk, NPY_CHUNK_BYTES // max(row_bytes, 1)))


def npy_chunks(
    stream: ByteStream, header: NpyHeader, rows_per_chunk: int, *, first_row: int = 1
) -> Iterator[tuple[int, npt.NDArray[Any]]]:
    """(first row number, rows) pieces of the array, read `rows_per_chunk` rows (at most NPY_CHUNK_BYTES)
    at a time. A shard's stream holds `header.rows` rows from row number `first_row` on."""
    reader = ExactReader(stream)
    rows_per_read = npy_rows_per_read(header.row_bytes, rows_per_chunk)
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
        yield first_row + done, rows
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
                chunk.fail(position, exc.message)
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
