"""The datatype table in plain strings: V2 datatype, numpy dtype name, onnxruntime type string, and the numpy
dtype kinds a JSON payload may carry for it before casting.

A leaf without numpy: a manifest's signature names its datatypes from here, so the registry function, which
runs no model, validates manifests without importing numpy. `maas.datatypes` turns each row into dtypes.
"""

from __future__ import annotations

# JSON true/false are not numbers: a boolean sent for a numeric tensor is a client mistake.
_INTEGER_KINDS = "iu"
_FLOAT_KINDS = "fiu"

# (V2 name, numpy dtype name, onnxruntime type string, JSON kinds)
DATATYPE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("BOOL", "bool", "tensor(bool)", "b"),
    ("UINT8", "uint8", "tensor(uint8)", _INTEGER_KINDS),
    ("UINT16", "uint16", "tensor(uint16)", _INTEGER_KINDS),
    ("UINT32", "uint32", "tensor(uint32)", _INTEGER_KINDS),
    ("UINT64", "uint64", "tensor(uint64)", _INTEGER_KINDS),
    ("INT8", "int8", "tensor(int8)", _INTEGER_KINDS),
    ("INT16", "int16", "tensor(int16)", _INTEGER_KINDS),
    ("INT32", "int32", "tensor(int32)", _INTEGER_KINDS),
    ("INT64", "int64", "tensor(int64)", _INTEGER_KINDS),
    ("FP16", "float16", "tensor(float16)", _FLOAT_KINDS),
    ("FP32", "float32", "tensor(float)", _FLOAT_KINDS),
    ("FP64", "float64", "tensor(double)", _FLOAT_KINDS),
    ("BYTES", "object", "tensor(string)", "OUS"),
)

V2_NAMES: tuple[str, ...] = tuple(row[0] for row in DATATYPE_ROWS)
