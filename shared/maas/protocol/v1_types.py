"""KServe V1 (TensorFlow-Serving style) wire types.

As in maas.protocol.v2_types, predict's request and answer are built at import, the rest on first use.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maas.explain.parameters import ExplainParameters
from maas.protocol import request_examples


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OnDemand(_Wire):
    """A type only some routes use: pydantic builds its validator and serializer when it is first used."""

    model_config = ConfigDict(defer_build=True)


class PredictRequest(_Wire):
    model_config = ConfigDict(json_schema_extra={"examples": [request_examples.V1_PREDICT]})

    instances: list[Any] = Field(
        min_length=1,
        description="One entry per row: the row itself for a single-input model, or {input: row} objects.",
    )
    parameters: dict[str, Any] | None = None


class PredictResponse(_Wire):
    predictions: list[Any]


class ExplainRequest(PredictRequest):
    model_config = ConfigDict(defer_build=True, json_schema_extra={"examples": [request_examples.V1_EXPLAIN]})

    parameters: ExplainParameters | None = None  # type: ignore[assignment]


class V1ExplainResponse(_OnDemand):
    predictions: list[Any]
    explanations: list[Any] = Field(
        description="One per instance: its attribution shaped like it (an object per input for several "
        "inputs); for text, {tokens, attributions} over the text's own tokens."
    )
    parameters: dict[str, Any] = Field(description="The method, target and settings the attributions used.")


class V1ServerLive(_OnDemand):
    """KServe V1's liveness answer at the server root."""

    status: Literal["alive"]


class V1ModelList(_OnDemand):
    models: list[str]


class V1ModelStatus(_OnDemand):
    name: str
    ready: bool
