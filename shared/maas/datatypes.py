"""The one table that links V2 datatypes, numpy dtypes and onnxruntime's type strings, as numpy dtypes.

Every codec reads this module; nothing but its numpy-free source, maas.datatype_table, spells a datatype
out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maas.datatype_table import DATATYPE_ROWS


@dataclass(frozen=True, slots=True)
class Datatype:
    v2: str
    numpy: np.dtype[np.generic]
    onnx: str
    # numpy dtype kinds a JSON payload may carry for this datatype before casting.
    json_kinds: frozenset[str]


DATATYPES: tuple[Datatype, ...] = tuple(
    Datatype(v2, np.dtype(numpy_name), onnx, frozenset(kinds))
    for v2, numpy_name, onnx, kinds in DATATYPE_ROWS
)

BY_V2: dict[str, Datatype] = {d.v2: d for d in DATATYPES}
BY_ONNX: dict[str, Datatype] = {d.onnx: d for d in DATATYPES}
BY_NUMPY: dict[np.dtype[np.generic], Datatype] = {d.numpy: d for d in DATATYPES}
# The same names as maas.datatype_table.V2_NAMES, in the same order.
V2_NAMES: tuple[str, ...] = tuple(BY_V2)


def from_v2(name: str) -> Datatype | None:
    return BY_V2.get(name)


def from_onnx(type_string: str) -> Datatype | None:
    return BY_ONNX.get(type_string)


def from_numpy(dtype: np.dtype[np.generic]) -> Datatype | None:
    if dtype.kind in "SU":
        return BY_V2["BYTES"]
    return BY_NUMPY.get(dtype)
