"""A model's signature: the names, V2 datatypes and shapes of its inputs and outputs.

A leaf: the manifest stores it, the runtime checks requests against it, and codecs describe it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from maas.datatype_table import V2_NAMES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One input or output: V2 datatype and shape, with -1 for a dynamic dimension."""

    name: str
    datatype: str
    shape: list[int]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in V2_NAMES:
            raise ValueError(f"expected one of {list(V2_NAMES)}, got {value!r}")
        return value


class Signature(_Frozen):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
