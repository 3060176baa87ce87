"""Open Inference Protocol V2 wire types. They are the contract, and the source of the OpenAPI document.

The types of an inference request and its answer are built when this module is imported: a function's
first request needs them. The others (explain, metadata, health, listings) are built on first use, each by
the route that uses it, so a cold start does not pay for the routes its first request does not take.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from maas.explain.parameters import ExplainParameters
from maas.protocol import request_examples


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OnDemand(_Wire):
    """A type only some routes use: pydantic builds its validator and serializer when it is first used."""

    model_config = ConfigDict(defer_build=True)


class RequestInput(_Wire):
    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data_size` marks the input as binary (Triton's extension)."
    )
    data: list[Any] | None = Field(default=None, description="Flat or nested; omitted for binary inputs.")


class RequestOutput(_Wire):
    name: StrictStr
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data: true` asks for this output in binary form."
    )


class InferenceRequestBody(_Wire):
    id: StrictStr | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data_output: true` asks for every output in binary form."
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(default=None, min_length=1)


class HttpInferenceRequestBody(InferenceRequestBody):
    """The body of POST .../infer and .../explain. The path selects the model; clients such as KServe's
    SDK also name it in the body, which must then agree with the path."""

    model_config = ConfigDict(json_schema_extra={"examples": [request_examples.V2_INFER]})

    model_name: StrictStr | None = Field(
        default=None,
        description="Checked, not used: the path's model name (or the path's `name@alias` as written).",
    )
    model_version: StrictStr | None = Field(
        default=None,
        description="Checked, not used: only with a `/versions/{version}` path, and then equal to it.",
    )


class ExplainRequestBody(HttpInferenceRequestBody):
    model_config = ConfigDict(defer_build=True, json_schema_extra={"examples": [request_examples.V2_EXPLAIN]})

    parameters: ExplainParameters | None = None  # type: ignore[assignment]


class ResponseOutput(_Wire):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponseBody(_Wire):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(_OnDemand):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(_OnDemand):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] | None = None


class ServerMetadataResponse(_OnDemand):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(_OnDemand):
    live: bool


class ReadyResponse(_OnDemand):
    ready: bool


class ModelIndexEntry(_OnDemand):
    name: str
    versions: list[str]


class ModelListResponse(_OnDemand):
    models: list[ModelIndexEntry]


class RepositoryIndexEntry(_OnDemand):
    """One row of Triton's repository index."""

    name: str
    version: str
    state: str
    reason: str = ""


class ModelReadyResponse(_OnDemand):
    name: str
    version: str
    ready: bool


class ErrorResponse(_Wire):
    error: str
