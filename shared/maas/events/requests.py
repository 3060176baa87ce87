"""The inference request events carry: a V2 request body plus the model it is for.

    {"model": "seed-mlp@production", "id": "r-1", "inputs": [{"name": ..., "shape": ..., "datatype": ...,
     "data": [...]}], "outputs": [...], "parameters": {...}}

Direct invokes send it as the event itself, async requests as an SQS message body. Tensors are JSON only:
there is no HTTP body to carry Triton's binary extension.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr, ValidationError

from maas.api.tensor_codec import TensorLimits
from maas.api.v2_codec import decode_wire_request
from maas.api.v2_types import InferenceRequestBody
from maas.api.validation_messages import describe_validation_error
from maas.errors import InvalidInput
from maas.infer_types import InferenceRequest
from maas.registry.references import ModelRef, parse_ref


class EventInferenceRequest(InferenceRequestBody):
    model: StrictStr = Field(description="A model reference: name, name@alias or name/versions/<n>.")


def decode_event_request(body: Any, limits: TensorLimits) -> tuple[ModelRef, InferenceRequest]:
    """The model and request an event carries; InvalidInput names what is wrong, never echoing values."""
    if not isinstance(body, dict):
        raise InvalidInput(f"event: expected a JSON object with 'model' and 'inputs', got {_kind(body)}")
    try:
        wire = EventInferenceRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
    return parse_ref(wire.model), decode_wire_request(wire, limits).request


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number"
    )
