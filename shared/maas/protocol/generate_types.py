"""Triton's generate extension: POST /v2/models/{name}[/versions/{version}]/generate and /generate_stream.

The request is the prompt as `text_input` with the sampling `parameters`; the answer is `text_output`, whole
or as one SSE `data: {...}` event per decoded piece. Besides Triton's fields, an answer says why it ended
and how many tokens it used, which Triton leaves to the backend.

Built on first use: the generate function's first request is more often an OpenAI-compatible one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from maas.protocol.openai_types import MAX_STOP_SEQUENCES


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class GenerateParameters(_Wire):
    max_tokens: StrictInt | None = Field(default=None, description="The model's default when unset.")
    temperature: StrictFloat | None = Field(default=None, json_schema_extra={"minimum": 0, "maximum": 2})
    top_p: StrictFloat | None = Field(default=None, json_schema_extra={"exclusiveMinimum": 0, "maximum": 1})
    top_k: StrictInt | None = Field(default=None, json_schema_extra={"minimum": 0})
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = Field(
        default=None, description=f"Up to {MAX_STOP_SEQUENCES} strings; the text ends before the first."
    )
    stream: StrictBool | None = Field(
        default=None, description="Only false on /generate; /generate_stream always streams."
    )
    routing_key: StrictStr | None = Field(
        default=None, description="Pins the caller to one side of a canary split."
    )


class GenerateRequest(_Wire):
    id: StrictStr | None = None
    text_input: StrictStr = Field(description="The prompt, as is: no chat template is applied.")
    parameters: GenerateParameters | None = None


class GenerateResponse(BaseModel):
    """A whole answer of /generate, and each event of /generate_stream (its `text_output` a piece)."""

    model_config = ConfigDict(defer_build=True)

    id: str | None = None
    model_name: str
    model_version: str
    text_output: str
    # On a whole answer, and on a stream's last event only.
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_budget_exhausted: bool | None = None
