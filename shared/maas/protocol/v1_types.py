"""KServe V1 (TensorFlow-Serving style) wire types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maas.explain.parameters import ExplainParameters


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


class ExplainRequest(PredictRequest):
    parameters: ExplainParameters | None = None  # type: ignore[assignment]


class V1ExplainResponse(_Wire):
    predictions: list[Any]
    explanations: list[Any] = Field(
        description="One per instance: its attribution shaped like it (an object per input for several "
        "inputs); for text, {tokens, attributions} over the text's own tokens."
    )
    parameters: dict[str, Any] = Field(description="The method, target and settings the attributions used.")


class V1ServerLive(_Wire):
    """KServe V1's liveness answer at the server root."""

    status: Literal["alive"]


class V1ModelList(_Wire):
    models: list[str]


class V1ModelStatus(_Wire):
    name: str
    ready: bool
