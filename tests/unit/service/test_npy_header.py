""".npy headers from outside: every malformed one is a MalformedJobInput that names the problem, never
another exception (which would send the job to the dead-letter queue without a status), and no header is
read past numpy's 10,000-byte limit or trusted with a row count the file's size does not confirm."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from maas.errors import MaasError
from maas.service.job_npy import MAX_NPY_HEADER_BYTES, NPY_CHUNK_BYTES, NpyHeader, npy_chunks, read_npy_header
from maas.service.job_rows import MalformedJobInput

GOOD_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"


def npy_file(
    header: str | bytes = GOOD_HEADER,
    *,
    version: tuple[int, int] = (1, 0),
    data: bytes = b"",
    declared_length: int | None = None,
) -> bytes:
    """A .npy file built by hand, so each part can be wrong on its own."""
    raw = header.encode("latin1" if version < (3, 0) else "utf-8") if isinstance(header, str) else header
    length_bytes = 2 if version == (1, 0) else 4
    length = len(raw) if declared_length is None else declared_length
    return b"\x93NUMPY" + bytes(version) + length.to_bytes(length_bytes, "little") + raw + data


def saved(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


def header_of(content: bytes, *, sized: bool = True) -> NpyHeader:
    return read_npy_header(io.BytesIO(content), len(content) if sized else None)


class ReadTracker(io.BytesIO):
    """A stream that remembers the largest read asked of it."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.largest_read = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.largest_read = max(
            self.largest_read, size if size is not None and size > 0 else len(self.getvalue())
        )
        return super().read(size)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_npy_version_reads_its_rows(version: tuple[int, int]) -> None:
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    content = saved(rows, version)
    stream = io.BytesIO(content)

    header = read_npy_header(stream, len(content))
    (first, read), *_ = list(npy_chunks(stream, header, rows_per_chunk=10))

    assert (header.rows, header.row_shape, header.dtype) == (4, (3,), np.dtype("<f4"))
    assert first == 1
    np.testing.assert_array_equal(read, rows)


@pytest.mark.parametrize(
    ("descr", "expected"),
    [
        ("'>f4'", np.dtype(">f4")),  # big-endian: read as such, cast to the model's type later
        ("'<f2'", np.dtype("<f2")),
        ("'|b1'", np.dtype(bool)),
        ("'<i8'", np.dtype("<i8")),
        ("'|u1'", np.dtype("u1")),
        ("'<U5'", np.dtype("<U5")),
        ("'|S5'", np.dtype("S5")),
        ("'float32'", np.dtype("float32")),
    ],
)
def test_plain_numbers_and_fixed_width_strings_of_either_byte_order_are_read(
    descr: str, expected: np.dtype
) -> None:
    header = header_of(
        npy_file(
            f"{{'descr': {descr}, 'fortran_order': False, 'shape': (2,)}}", data=bytes(2 * expected.itemsize)
        )
    )

    assert header.dtype == expected and header.rows == 2


def test_big_endian_values_arrive_as_numbers() -> None:
    rows = np.array([[1.5, -2.0], [3.25, 1e30]], dtype=">f8")
    content = saved(rows)
    stream = io.BytesIO(content)

    header = read_npy_header(stream, len(content))
    ((_, read),) = list(npy_chunks(stream, header, rows_per_chunk=8))

    np.testing.assert_array_equal(read.astype(np.float32), rows.astype(np.float32))


MALFORMED: list[tuple[str, bytes, str]] = [
    # the magic and the version
    ("empty file", b"", "expected a NumPy .npy file"),
    ("truncated magic", b"\x93NUM", "expected a NumPy .npy file"),
    ("magic without a version", b"\x93NUMPY", "expected a NumPy .npy file"),
    ("half a version", b"\x93NUMPY\x01", "expected a NumPy .npy file"),
    ("another format", b"PK\x03\x04" + bytes(100), "expected a NumPy .npy file"),
    ("version 0.0", npy_file(version=(0, 0)), "expected format version 1.0, 2.0 or 3.0, got 0.0"),
    ("version 1.1", npy_file(version=(1, 1)), "got 1.1"),
    ("version 4.0", npy_file(version=(4, 0)), "got 4.0"),
    ("version 255.255", npy_file(version=(255, 255)), "got 255.255"),
    # the header's length
    ("length field cut short (1.0)", b"\x93NUMPY\x01\x00\x10", "the file ends inside its header"),
    ("length field cut short (2.0)", b"\x93NUMPY\x02\x00\x10\x00", "the file ends inside its header"),
    ("length past the end of the file", npy_file(declared_length=500), "the file ends inside its header"),
    (
        "length past numpy's limit",
        npy_file(version=(2, 0), declared_length=MAX_NPY_HEADER_BYTES + 1),
        f"expected a header of at most {MAX_NPY_HEADER_BYTES} bytes",
    ),
    ("length of 4 GiB", npy_file(version=(3, 0), declared_length=2**32 - 1), "declaring 4294967295"),
    # the header's text
    (
        "unbalanced brackets",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3"),
        "dict literal",
    ),
    ("unclosed string", npy_file("{'descr': '<f4"), "dict literal"),
    ("a triple-quoted string left open", npy_file("{'descr': '''<f4"), "dict literal"),
    ("empty header", npy_file(""), "dict literal"),
    ("a list", npy_file("[1, 2, 3]"), "dict literal"),
    ("a string", npy_file("'text'"), "dict literal"),
    ("None", npy_file("None"), "dict literal"),
    ("code", npy_file("__import__('os').system('true')"), "dict literal"),
    ("a call inside", npy_file("{'descr': str(1), 'fortran_order': False, 'shape': (1,)}"), "dict literal"),
    ("nested too deep", npy_file("(" * 5000 + ")" * 5000), "dict literal"),
    ("an integer of 5000 digits", npy_file("{'shape': (" + "9" * 5000 + ",)}"), "dict literal"),
    ("bytes not latin-1 text (3.0 is UTF-8)", npy_file(b"{'descr': '\xff'}", version=(3, 0)), "utf-8 text"),
    ("latin-1 that is not a literal", npy_file(b"{'descr': \xe9}"), "dict literal"),
    ("NUL bytes", npy_file(b"\0" * 64), "dict literal"),
    # the keys
    ("missing shape", npy_file("{'descr': '<f4', 'fortran_order': False}"), "keys"),
    ("missing descr", npy_file("{'fortran_order': False, 'shape': (2, 3)}"), "keys"),
    ("an extra key", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}"), "keys"),
    ("an empty dict", npy_file("{}"), "keys"),
    # fortran_order
    (
        "fortran order of a table",
        npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}"),
        "Fortran",
    ),
    (
        "fortran_order not a bool",
        npy_file("{'descr': '<f4', 'fortran_order': 1, 'shape': (2, 3)}"),
        "True or False",
    ),
    (
        "fortran_order a string",
        npy_file("{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,)}"),
        "True or False",
    ),
    # the shape
    ("a 0-d array", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': ()}"), "0-d array"),
    (
        "a negative row count",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3)}"),
        "non-negative",
    ),
    (
        "a negative row size",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}"),
        "non-negative",
    ),
    (
        "a float dimension",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3)}"),
        "tuple of int",
    ),
    (
        "a boolean dimension",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (True, 3)}"),
        "tuple of int",
    ),
    (
        "a string dimension",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}"),
        "tuple of int",
    ),
    ("a list shape", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}"), "tuple of int"),
    ("an int shape", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': 2}"), "tuple of int"),
    (
        "too many dimensions",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) * 33}"),
        "dict literal",
    ),
    (
        "too many dimensions, spelled out",
        npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1, " * 33 + ")}"),
        "at most 32 dimensions",
    ),
    # the dtype
    ("an object array", npy_file("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}"), "object array"),
    ("zero-width unicode", npy_file("{'descr': '<U0', 'fortran_order': False, 'shape': (2,)}"), "zero-width"),
    (
        "zero-width unicode, short",
        npy_file("{'descr': 'U', 'fortran_order': False, 'shape': (2,)}"),
        "zero-width",
    ),
    ("zero-width bytes", npy_file("{'descr': '|S0', 'fortran_order': False, 'shape': (2,)}"), "zero-width"),
    ("zero-width void", npy_file("{'descr': '|V0', 'fortran_order': False, 'shape': (2,)}"), "got dtype |V0"),
    ("void", npy_file("{'descr': '|V8', 'fortran_order': False, 'shape': (2,)}"), "got dtype |V8"),
    ("complex", npy_file("{'descr': '<c8', 'fortran_order': False, 'shape': (2,)}"), "got dtype complex64"),
    (
        "datetime",
        npy_file("{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (2,)}"),
        "got dtype datetime64",
    ),
    (
        "timedelta",
        npy_file("{'descr': '<m8[s]', 'fortran_order': False, 'shape': (2,)}"),
        "got dtype timedelta64",
    ),
    (
        "a sub-array dtype",
        npy_file("{'descr': '(2,)<f4', 'fortran_order': False, 'shape': (2,)}"),
        "got dtype",
    ),
    (
        "a structured dtype",
        npy_file("{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,)}"),
        "structured dtype",
    ),
    (
        "an unknown dtype",
        npy_file("{'descr': 'xyz', 'fortran_order': False, 'shape': (2,)}"),
        "numpy does not know",
    ),
    (
        "an empty dtype",
        npy_file("{'descr': '', 'fortran_order': False, 'shape': (2,)}"),
        "numpy does not know",
    ),
    (
        "a dtype too wide to exist",
        npy_file("{'descr': '<U9999999999999', 'fortran_order': False, 'shape': (2,)}"),
        "numpy does not know",
    ),
    (
        "a dtype that is a number",
        npy_file("{'descr': 4, 'fortran_order': False, 'shape': (2,)}"),
        "dtype string",
    ),
    (
        "a dtype that is None",
        npy_file("{'descr': None, 'fortran_order': False, 'shape': (2,)}"),
        "dtype string",
    ),
]


@pytest.mark.parametrize(
    ("content", "message"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_malformed_header_is_a_malformed_input_that_says_why(content: bytes, message: str) -> None:
    with pytest.raises(MalformedJobInput, match=r"^input\.npy: ") as raised:
        header_of(content)

    assert message in raised.value.message


def test_a_header_declaring_800_mb_is_refused_before_any_of_it_is_read() -> None:
    stream = ReadTracker(npy_file("{" * 1000, version=(2, 0), declared_length=800_000_000))

    with pytest.raises(MalformedJobInput, match="declaring 800000000"):
        read_npy_header(stream)

    assert stream.largest_read <= 8


def test_a_header_at_numpys_limit_is_read_and_one_byte_more_is_not() -> None:
    padded = GOOD_HEADER.ljust(MAX_NPY_HEADER_BYTES - 1) + "\n"
    data = bytes(2 * 3 * 4)

    assert header_of(npy_file(padded, version=(2, 0), data=data)).rows == 2
    with pytest.raises(MalformedJobInput, match="at most 10000 bytes"):
        header_of(npy_file(padded + " ", version=(2, 0), data=data))


@pytest.mark.parametrize(
    ("shape", "data_bytes", "message"),
    [
        ((1_000_000, 0), 0, "rows of at least one element"),
        ((5, 3, 0), 0, "rows of at least one element"),
        ((5, 0, 3), 60, "rows of at least one element"),
        ((1_000_000, 3), 12, "the header promises 1000000 rows of 12 bytes, the file holds 12 bytes"),
        ((10**30, 3), 120, "promises 1000000000000000000000000000000 rows"),
        ((2, 3), 23, "the file holds 23 bytes"),
        ((2, 3), 25, "the file holds 25 bytes"),
        ((0, 3), 12, "the file holds 12 bytes"),
        ((3,), 0, "promises 3 rows of 4 bytes"),
    ],
)
def test_the_row_count_must_account_for_the_file_size_exactly(
    shape: tuple[int, ...], data_bytes: int, message: str
) -> None:
    content = npy_file(
        f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}}}", data=bytes(data_bytes)
    )

    with pytest.raises(MalformedJobInput, match=r"^input\.npy: ") as raised:
        header_of(content)

    assert message in raised.value.message


@pytest.mark.parametrize(("shape", "rows"), [((0, 3), 0), ((0, 0), 0), ((0,), 0), ((3,), 3)])
def test_no_rows_and_one_dimensional_rows_are_fine(shape: tuple[int, ...], rows: int) -> None:
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * 4
    content = npy_file(
        f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}}}", data=bytes(rows * row_bytes)
    )
    stream = io.BytesIO(content)

    header = read_npy_header(stream, len(content))

    assert sum(len(part) for _, part in npy_chunks(stream, header, rows_per_chunk=2)) == rows


def test_fortran_order_of_a_single_column_is_the_same_bytes_and_is_read() -> None:
    content = saved(np.asfortranarray(np.arange(4, dtype=np.int64)))

    assert header_of(content).rows == 4


def test_a_chunk_holds_at_most_npy_chunk_bytes_however_many_rows_a_run_takes() -> None:
    row = 1024 * 1024  # 1 MiB rows of bytes
    rows = NPY_CHUNK_BYTES // row + 3
    content = npy_file(
        f"{{'descr': '|S{row}', 'fortran_order': False, 'shape': ({rows},)}}", data=bytes(rows * row)
    )
    stream = io.BytesIO(content)
    header = read_npy_header(stream, len(content))

    sizes = [len(part) for _, part in npy_chunks(stream, header, rows_per_chunk=512)]

    assert sizes == [NPY_CHUNK_BYTES // row, 3]


def test_fuzzed_headers_only_ever_fail_as_malformed_input() -> None:
    """Seeded mutations of real headers (bytes flipped, cut, spliced): each one reads or is refused."""
    rng = random.Random(16)
    originals = [
        saved(np.zeros((3, 2), dtype=np.float32)),
        saved(np.zeros((2,), dtype="<U3"), (2, 0)),
        saved(np.zeros((2, 2), dtype=">i2"), (3, 0)),
    ]
    alphabet = b"{}()[]',:-_ 0123456789<>|=fiubUSVOMmcTrueFalsNn\x00\xff\n"
    outcomes: dict[str, int] = {}
    for _ in range(3000):
        content = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(min(len(content), 80))
            action = rng.randrange(4)
            if action == 0:
                content[position] = rng.randrange(256)
            elif action == 1:
                content[position] = rng.choice(alphabet)
            elif action == 2:
                del content[position : position + rng.randint(1, 8)]
            else:
                content[position:position] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        stream = io.BytesIO(bytes(content))
        try:
            header = read_npy_header(stream, len(content))
            for _ in npy_chunks(stream, header, rows_per_chunk=2):
                pass
        except MalformedJobInput:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
        except MaasError as exc:  # pragma: no cover - the assertion below names it
            pytest.fail(f"a MaasError that is not MalformedJobInput: {exc!r}")
        else:
            outcomes["read"] = outcomes.get("read", 0) + 1

    assert outcomes["refused"] > 1000 and outcomes.get("read", 0) > 0
