"""The one table that links V2 datatypes, numpy dtypes and onnxruntime's type strings.

Every codec and signature check reads this module; nothing else spells a datatype out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Datatype:
    v2: str
    numpy: np.dtype[np.generic]
    onnx: str
    # numpy dtype kinds a JSON payload may carry for this datatype before casting.
    json_kinds: frozenset[str]


def _dt(v2: str, numpy_type: type[np.generic] | str, onnx: str, kinds: str) -> Datatype:
    return Datatype(v2, np.dtype(numpy_type), onnx, frozenset(kinds))


# JSON true/false are not numbers: a boolean sent for a numeric tensor is a client mistake.
_INTEGER_KINDS = "iu"
_FLOAT_KINDS = "fiu"

DATATYPES: tuple[Datatype, ...] = (
    _dt("BOOL", np.bool_, "tensor(bool)", "b"),
    _dt("UINT8", np.uint8, "tensor(uint8)", _INTEGER_KINDS),
    _dt("UINT16", np.uint16, "tensor(uint16)", _INTEGER_KINDS),
    _dt("UINT32", np.uint32, "tensor(uint32)", _INTEGER_KINDS),
    _dt("UINT64", np.uint64, "tensor(uint64)", _INTEGER_KINDS),
    _dt("INT8", np.int8, "tensor(int8)", _INTEGER_KINDS),
    _dt("INT16", np.int16, "tensor(int16)", _INTEGER_KINDS),
    _dt("INT32", np.int32, "tensor(int32)", _INTEGER_KINDS),
    _dt("INT64", np.int64, "tensor(int64)", _INTEGER_KINDS),
    _dt("FP16", np.float16, "tensor(float16)", _FLOAT_KINDS),
    _dt("FP32", np.float32, "tensor(float)", _FLOAT_KINDS),
    _dt("FP64", np.float64, "tensor(double)", _FLOAT_KINDS),
    _dt("BYTES", np.object_, "tensor(string)", "OUS"),
)

BY_V2: dict[str, Datatype] = {d.v2: d for d in DATATYPES}
BY_ONNX: dict[str, Datatype] = {d.onnx: d for d in DATATYPES}
BY_NUMPY: dict[np.dtype[np.generic], Datatype] = {d.numpy: d for d in DATATYPES}
V2_NAMES: tuple[str, ...] = tuple(BY_V2)


def from_v2(name: str) -> Datatype | None:
    return BY_V2.get(name)


def from_onnx(type_string: str) -> Datatype | None:
    return BY_ONNX.get(type_string)


def from_numpy(dtype: np.dtype[np.generic]) -> Datatype | None:
    if dtype.kind in "SU":
        return BY_V2["BYTES"]
    return BY_NUMPY.get(dtype)
