"""The one protocol-neutral request and response representation; adapters convert at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # numpy.typing costs an import at start; the annotations are strings at runtime.
    import numpy.typing as npt

    from maas.signature import TensorSpec


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    datatype: str
    array: npt.NDArray[Any]

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    inputs: list[Tensor]
    # None means every output of the model, in signature order.
    outputs: list[str] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferenceResponse:
    model_name: str
    model_version: int
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[int]
    version: int
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]
