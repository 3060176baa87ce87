"""Tensor data on the wire <-> numpy, for every V2 datatype: JSON lists and the binary tensor format.

Pure functions over the datatype table. Binary data is read with np.frombuffer, so a tensor shares the
request's bytes instead of copying them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.config import (
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_STRING_BYTES,
    ENV_MAX_STRING_BYTES,
    Settings,
)
from maas.datatypes import DATATYPES, Datatype
from maas.errors import InvalidInput, PayloadTooLarge

_KIND_NAMES = {
    "b": "booleans",
    "i": "integers",
    "u": "integers",
    "f": "numbers with a fraction",
    "U": "strings",
    "S": "strings",
    "O": "a ragged or mixed-type list",
}
_LENGTH_PREFIX = struct.Struct("<I")
# The wire's byte order for each dtype, made once: newbyteorder builds a new dtype on every call.
_LITTLE_ENDIAN = {d.numpy: d.numpy.newbyteorder("<") for d in DATATYPES}
# numpy's own limit is 64; no ONNX model we serve needs more than a handful.
MAX_RANK = 32
MAX_ECHOED_DIMS = 8


# What a JSON BYTES element that is not a string arrived as, for the error message.
_JSON_VALUE_NAMES: dict[type, str] = {
    bool: "booleans",
    int: "integers",
    float: "numbers with a fraction",
    dict: "objects",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class TensorLimits:
    """The request limits a codec enforces while decoding, read once from Settings."""

    max_batch: int
    max_elements: int
    # UTF-8 bytes of one BYTES element (MAAS_MAX_STRING_BYTES).
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    # Levels of JSON nesting, counted from the document's root (MAAS_MAX_JSON_DEPTH).
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH

    @classmethod
    def from_settings(cls, settings: Settings) -> TensorLimits:
        return cls(
            max_batch=settings.max_batch,
            max_elements=settings.max_elements,
            max_string_bytes=settings.max_string_bytes,
            max_json_depth=settings.max_json_depth,
        )


def check_shape(shape: list[int], where: str, limits: TensorLimits) -> int:
    """Validate a declared shape against the limits before any data is touched; returns its element count.

    Every dimension is bounded before anything is multiplied, so a hostile shape costs no arithmetic on
    huge integers and nothing downstream (numpy's reshape) sees a dimension it cannot hold."""
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"{where}.shape: expected at most {MAX_RANK} dimensions, got {len(shape)}")
    count: int | None = 1
    if shape:
        # min and max in C rather than a generator per check: this runs for every tensor of every request.
        if min(shape) < 0:
            raise InvalidInput(
                f"{where}.shape: expected non-negative dimensions, got {describe_shape(shape)}"
            )
        if shape[0] > limits.max_batch:
            raise PayloadTooLarge(
                f"{where}.shape: expected a batch of at most {limits.max_batch} (MAAS_MAX_BATCH), "
                f"got {shape[0]}"
            )
        count = math.prod(shape) if max(shape) <= limits.max_elements else None
    if count is None or count > limits.max_elements:
        raise PayloadTooLarge(
            f"{where}.shape: expected at most {limits.max_elements} elements (MAAS_MAX_ELEMENTS), "
            f"got {describe_shape(shape)}"
        )
    return count


def describe_shape(shape: list[int]) -> str:
    return str(shape) if len(shape) <= MAX_ECHOED_DIMS else f"a shape of {len(shape)} dimensions"


def nested_shape(data: list[Any]) -> list[int]:
    """The shape nested lists claim along their first elements; decoding then checks every element."""
    shape: list[int] = []
    item: Any = data
    while isinstance(item, list) and len(shape) <= MAX_RANK:
        shape.append(len(item))
        if not item:
            break
        item = item[0]
    return shape


def array_from_json(
    data: list[Any],
    datatype: Datatype,
    shape: list[int],
    where: str,
    *,
    may_hold_booleans: bool = True,
    max_string_bytes: int | None = None,
) -> npt.NDArray[Any]:
    """Nested or flat JSON data, checked for count, kind and range, in the datatype's dtype and shape.

    `may_hold_booleans=False` (the body has no true/false literal) skips the scan for booleans hiding
    among numbers, which numpy would otherwise silently turn into 1 and 0. `max_string_bytes` bounds each
    element of a BYTES tensor (None: unbounded)."""
    count = math.prod(shape)
    _check_depth(data, where)
    if datatype.v2 == "BYTES":
        return _strings_from_json(data, shape, count, where, max_string_bytes)
    if may_hold_booleans and datatype.v2 != "BOOL" and _holds_booleans(data):
        raise InvalidInput(f"{where}.data: expected {datatype.v2} values, got booleans")
    try:
        raw = np.asarray(data)
    except ValueError:
        raise InvalidInput(
            f"{where}.data: expected a flat or nested list, got a ragged nested list"
        ) from None
    if raw.size != count:
        raise InvalidInput(
            f"{where}.data: shape {describe_shape(shape)} needs {count} elements, got {raw.size}"
        )
    if raw.size == 0:
        return np.zeros(shape, dtype=datatype.numpy)
    if datatype.numpy.kind in "iu" and raw.dtype.kind in "fO":
        # numpy reads [1, 2**63] as float64 (or object past 64 bits); checked as Python ints instead, so
        # UINT64 values above 2**63 keep their low bits.
        raw = _exact_integers(data, raw, datatype, where)
    elif datatype.numpy.kind == "f" and raw.dtype.kind == "O":
        raw = _floats_from_wide_integers(raw)
    if raw.dtype.kind not in datatype.json_kinds:
        got = _KIND_NAMES.get(raw.dtype.kind, raw.dtype.kind)
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            got = "NaN or Infinity"
        elif raw.dtype.kind == "O" and any(isinstance(v, int) and not isinstance(v, bool) for v in raw.flat):
            got = "integers beyond 64 bits or mixed types"
        raise InvalidInput(f"{where}.data: expected {datatype.v2} values, got {got}")
    return _cast(raw, datatype, where).reshape(shape)


def _floats_from_wide_integers(raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """An integer past 64 bits is a number like any other to a float input: its nearest float, and
    ±Infinity beyond float64, which is how the event paths' parser reads the same numeral.

    Anything else that left numpy with an object array (strings, null, mixed kinds) stays as it is, to be
    refused by the kind check with its own message."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw.flat):
        return raw
    return np.array([_nearest_float(v) for v in raw.flat], dtype=np.float64).reshape(raw.shape)


def _nearest_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _check_depth(data: list[Any], where: str) -> None:
    depth, item = 0, data
    while isinstance(item, list) and item:
        depth += 1
        if depth > MAX_RANK:
            raise InvalidInput(f"{where}.data: expected at most {MAX_RANK} levels of nesting, got deeper")
        item = item[0]


def _strings_from_json(
    data: list[Any], shape: list[int], count: int, where: str, max_string_bytes: int | None
) -> npt.NDArray[Any]:
    # Built as Python objects: numpy's fixed-width str dtype would give every element the width of the
    # longest, so one long string among many short ones would cost gigabytes.
    try:
        raw = np.asarray(data, dtype=object)
    except ValueError:
        raise InvalidInput(
            f"{where}.data: expected a flat or nested list, got a ragged nested list"
        ) from None
    items: list[Any] = raw.ravel().tolist()
    for item in items:
        if type(item) is not str:
            if isinstance(item, list):
                raise InvalidInput(f"{where}.data: expected a flat or nested list, got a ragged nested list")
            got = _JSON_VALUE_NAMES.get(type(item), "other values")
            raise InvalidInput(f"{where}.data: expected BYTES values, got {got}")
    if raw.size != count:
        raise InvalidInput(
            f"{where}.data: shape {describe_shape(shape)} needs {count} elements, got {raw.size}"
        )
    _check_unicode(items, where)
    if max_string_bytes is not None:
        check_string_lengths(items, where, max_string_bytes)
    return raw.reshape(shape)


def _check_unicode(items: list[str], where: str) -> None:
    # Python's json (events) admits lone surrogates ("\ud800"), which no UTF-8 encoder will take: the
    # model would fail on them. One C-speed pass over the joined text; ASCII skips even the encode.
    joined = "".join(items)
    if joined.isascii():
        return
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        index = next(i for i, item in enumerate(items) if not _encodes(item))
        raise InvalidInput(
            f"{where}.data: expected valid Unicode text, got a lone surrogate in BYTES element {index}"
        ) from None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_string_lengths(items: Sequence[str | bytes], where: str, max_string_bytes: int) -> None:
    """Each text element within MAAS_MAX_STRING_BYTES (as UTF-8). Names the element, never its text."""
    # A character is at most 4 UTF-8 bytes, so only strings longer than a quarter of the limit are encoded.
    suspect = max_string_bytes // 4
    if not items or max(map(len, items)) <= suspect:
        return
    for index, item in enumerate(items):
        if len(item) > suspect:
            size = len(item) if isinstance(item, bytes) else len(item.encode("utf-8", "surrogatepass"))
            if size > max_string_bytes:
                raise string_too_large(where, index, size, max_string_bytes)


def string_too_large(where: str, index: int, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{where}: BYTES element {index} holds {size} bytes, expected at most {limit} "
        f"({ENV_MAX_STRING_BYTES})"
    )


def _holds_booleans(data: list[Any]) -> bool:
    pending = [data]
    while pending:
        for item in pending.pop():
            if type(item) is bool:
                return True
            if isinstance(item, list):
                pending.append(item)
    return False


def _exact_integers(
    data: list[Any], raw: npt.NDArray[Any], datatype: Datatype, where: str
) -> npt.NDArray[Any]:
    values = np.asarray(data, dtype=object).ravel()
    if not all(type(v) is int for v in values):
        return raw  # floats, NaN or mixed types: the kind check names them
    info = np.iinfo(datatype.numpy)  # type: ignore[type-var]  # integer datatypes only
    if min(values) < info.min or max(values) > info.max:
        raise InvalidInput(
            f"{where}.data: expected {datatype.v2} values in [{info.min}, {info.max}], got some outside"
        )
    return np.asarray(values.tolist(), dtype=datatype.numpy)


def _cast(raw: npt.NDArray[Any], datatype: Datatype, where: str) -> npt.NDArray[Any]:
    target = datatype.numpy
    if target.kind in "iu" and raw.dtype.kind in "iu":
        info = np.iinfo(target)  # type: ignore[type-var]  # integer kinds checked just above
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(
                f"{where}.data: expected {datatype.v2} values in [{info.min}, {info.max}], got some outside"
            )
    with np.errstate(over="ignore"):
        cast = raw.astype(target, copy=False)
    if (
        target.kind == "f"
        and raw.dtype.kind == "f"
        and not np.isfinite(cast).all()
        and np.isfinite(raw).all()
    ):
        raise InvalidInput(
            f"{where}.data: expected values within {datatype.v2} range, got some that overflow"
        )
    return cast


def array_from_binary(
    chunk: memoryview,
    datatype: Datatype,
    shape: list[int],
    where: str,
    *,
    max_string_bytes: int | None = None,
) -> npt.NDArray[Any]:
    count = math.prod(shape)
    if datatype.v2 == "BYTES":
        return _bytes_elements(chunk, count, where, max_string_bytes).reshape(shape)
    expected = count * datatype.numpy.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"{where}.parameters.binary_data_size: shape {describe_shape(shape)} of {datatype.v2} "
            f"needs {expected} bytes, got {len(chunk)}"
        )
    array = np.frombuffer(chunk, dtype=_LITTLE_ENDIAN[datatype.numpy]).reshape(shape)
    # onnxruntime wants native, aligned memory; copying only when the wire layout forbids sharing.
    if not array.dtype.isnative or not array.flags.aligned:
        array = array.astype(datatype.numpy)
    return array


def _bytes_elements(
    chunk: memoryview, count: int, where: str, max_string_bytes: int | None = None
) -> npt.NDArray[Any]:
    """Triton's BYTES layout: each element is a little-endian uint32 length, then that many bytes."""
    elements: list[str] = []
    offset = 0
    size = len(chunk)
    while offset < size:
        if offset + 4 > size:
            raise InvalidInput(f"{where}: BYTES element {len(elements)} has a truncated 4-byte length prefix")
        (length,) = _LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += 4
        if offset + length > size:
            raise InvalidInput(
                f"{where}: BYTES element {len(elements)} declares {length} bytes, only {size - offset} remain"
            )
        if max_string_bytes is not None and length > max_string_bytes:
            raise string_too_large(where, len(elements), length, max_string_bytes)
        try:
            elements.append(bytes(chunk[offset : offset + length]).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: BYTES element {len(elements)} is not valid UTF-8") from None
        offset += length
    if len(elements) != count:
        raise InvalidInput(f"{where}: shape needs {count} BYTES elements, got {len(elements)}")
    return np.array(elements, dtype=object)


def array_to_json(array: npt.NDArray[Any]) -> list[Any]:
    data: list[Any] = array.ravel().tolist()
    if array.dtype.kind in "OS":
        data = [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in data]
    return data


def array_to_binary(array: npt.NDArray[Any], datatype: Datatype) -> bytes:
    if datatype.v2 != "BYTES":
        return np.ascontiguousarray(array, dtype=_LITTLE_ENDIAN[datatype.numpy]).tobytes()
    parts: list[bytes] = []
    for item in array.ravel().tolist():
        encoded = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH_PREFIX.pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)
