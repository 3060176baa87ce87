"""The inference request events carry: a V2 request body plus the model it is for.

    {"model": "seed-mlp@production", "id": "r-1", "inputs": [{"name": ..., "shape": ..., "datatype": ...,
     "data": [...]}], "outputs": [...], "parameters": {...}}

With "operation": "explain" it asks for an explanation, its `parameters` those of the explain route.

Direct invokes send it as the event itself, async requests as an SQS message body. Tensors are JSON only:
there is no HTTP body to carry Triton's binary extension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, StrictStr, ValidationError

from maas.errors import InvalidInput
from maas.explain.parameters import ExplainParameters
from maas.infer_types import InferenceRequest, InferenceResponse
from maas.protocol.explain_codec import decode_explain_parameters
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import decode_wire_request
from maas.protocol.v2_types import InferenceRequestBody
from maas.protocol.validation_messages import describe_validation_error
from maas.registry.references import ModelRef, parse_ref
from maas.service.inference import InferenceService


class EventInferenceRequest(InferenceRequestBody):
    model: StrictStr = Field(description="A model reference: name, name@alias or name/versions/<n>.")
    operation: Literal["infer", "explain"] = "infer"


@dataclass(frozen=True, slots=True)
class EventRequest:
    ref: ModelRef
    request: InferenceRequest
    # Set when the event asks for an explanation rather than an inference.
    explain: ExplainParameters | None = None

    def answer(
        self, service: InferenceService, remaining_ms: Callable[[], int] | None = None
    ) -> InferenceResponse:
        if self.explain is None:
            return service.infer(self.ref, self.request, remaining_ms=remaining_ms)
        return service.explain(self.ref, self.request, self.explain, remaining_ms=remaining_ms)


def decode_event_request(body: Any, limits: TensorLimits) -> EventRequest:
    """The model and request an event carries; InvalidInput names what is wrong, never echoing values."""
    if not isinstance(body, dict):
        raise InvalidInput(f"event: expected a JSON object with 'model' and 'inputs', got {_kind(body)}")
    try:
        wire = EventInferenceRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
    request = decode_wire_request(wire, limits).request
    explain = decode_explain_parameters(request.parameters) if wire.operation == "explain" else None
    return EventRequest(parse_ref(wire.model), request, explain)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number"
    )
