"""KServe V1 (TensorFlow-Serving style) wire types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Wire):
    instances: list[Any] = Field(
        min_length=1,
        description="One entry per row: the row itself for a single-input model, or {input: row} objects.",
    )
    parameters: dict[str, Any] | None = None


class PredictResponse(_Wire):
    predictions: list[Any]


class V1ModelList(_Wire):
    models: list[str]


class V1ModelStatus(_Wire):
    name: str
    ready: bool
