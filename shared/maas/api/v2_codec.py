"""V2 JSON <-> the internal request/response types. Pure functions over the datatype table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from maas.api.v2_types import (
    InferenceRequestBody,
    InferenceResponseBody,
    MetadataTensor,
    ModelMetadataResponse,
    RequestInput,
    ResponseOutput,
)
from maas.datatypes import V2_NAMES, Datatype, from_v2
from maas.errors import InvalidInput
from maas.infer_types import InferenceRequest, InferenceResponse, ModelMetadata, Tensor
from maas.registry.manifest import TensorSpec

MAX_REPORTED_ERRORS = 3
_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_KIND_NAMES = {
    "b": "booleans",
    "i": "integers",
    "u": "integers",
    "f": "numbers with a fraction",
    "U": "strings",
    "S": "strings",
    "O": "a ragged or mixed-type list",
}


def decode_infer_request(body: str | bytes) -> InferenceRequest:
    try:
        wire = InferenceRequestBody.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
    return InferenceRequest(
        inputs=[decode_input(item, index) for index, item in enumerate(wire.inputs)],
        outputs=None if wire.outputs is None else [output.name for output in wire.outputs],
        id=wire.id,
        parameters=wire.parameters or {},
    )


def decode_input(item: RequestInput, index: int = 0) -> Tensor:
    where = f"inputs[{index}] ('{item.name[:64]}')"
    datatype = from_v2(item.datatype)
    if datatype is None:
        raise InvalidInput(f"{where}.datatype: expected one of {list(V2_NAMES)}, got {item.datatype[:32]!r}")
    if any(dim < 0 for dim in item.shape):
        raise InvalidInput(f"{where}.shape: expected non-negative dimensions, got {item.shape}")
    expected_count = math.prod(item.shape)
    try:
        raw = np.asarray(item.data)
    except ValueError:
        raise InvalidInput(
            f"{where}.data: expected a flat or nested list, got a ragged nested list"
        ) from None
    if raw.size != expected_count:
        raise InvalidInput(
            f"{where}.data: shape {item.shape} needs {expected_count} elements, got {raw.size}"
        )
    return Tensor(item.name, datatype.v2, _cast(raw, datatype, where).reshape(item.shape))


def _cast(raw: npt.NDArray[Any], datatype: Datatype, where: str) -> npt.NDArray[Any]:
    if raw.size == 0:
        return raw.astype(datatype.numpy)
    if raw.dtype.kind not in datatype.json_kinds:
        raise InvalidInput(
            f"{where}.data: expected {datatype.v2} values, "
            f"got {_KIND_NAMES.get(raw.dtype.kind, raw.dtype.kind)}"
        )
    if datatype.numpy.kind in "iu" and raw.dtype.kind in "iu":
        info = np.iinfo(datatype.numpy)  # type: ignore[type-var]  # kind checked just above
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(
                f"{where}.data: expected {datatype.v2} values in [{info.min}, {info.max}], got some outside"
            )
    if datatype.v2 == "BYTES":
        return raw.astype(object)
    return raw.astype(datatype.numpy, copy=False)


def encode_infer_response(response: InferenceResponse) -> str:
    body = InferenceResponseBody(
        model_name=response.model_name,
        model_version=str(response.model_version),
        id=response.id,
        parameters=response.parameters or None,
        outputs=[encode_output(tensor) for tensor in response.outputs],
    )
    return body.model_dump_json(exclude_none=True)


def encode_output(tensor: Tensor) -> ResponseOutput:
    array = tensor.array
    data = array.ravel().tolist()
    if array.dtype.kind == "O":
        data = [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in data]
    return ResponseOutput(name=tensor.name, datatype=tensor.datatype, shape=list(array.shape), data=data)


def encode_model_metadata(metadata: ModelMetadata) -> str:
    return ModelMetadataResponse(
        name=metadata.name,
        versions=[str(v) for v in metadata.versions],
        platform=metadata.platform,
        inputs=[_metadata_tensor(spec) for spec in metadata.inputs],
        outputs=[_metadata_tensor(spec) for spec in metadata.outputs],
    ).model_dump_json(exclude_none=True)


def _metadata_tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(name=spec.name, datatype=spec.datatype, shape=spec.shape)


def describe_validation_error(exc: ValidationError, subject: str = "request body") -> str:
    """Say where, what was expected and what type arrived, never the value itself."""
    messages = []
    for error in exc.errors(include_url=False)[:MAX_REPORTED_ERRORS]:
        where = _location(error["loc"]) or subject
        kind = error["type"]
        if kind == "json_invalid":
            messages.append(
                f"{subject}: expected JSON, got invalid JSON ({error['ctx'].get('error', 'parse error')})"
            )
        elif kind == "missing":
            messages.append(f"{where}: required field is missing")
        elif kind == "extra_forbidden":
            messages.append(f"{where}: unknown field")
        elif kind == "too_short":
            messages.append(f"{where}: expected at least {error['ctx']['min_length']} item(s), got none")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            messages.append(f"{where}: expected a JSON object, got {_json_type(error['input'])}")
        else:
            messages.append(
                f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {_json_type(error['input'])}"
            )
    remaining = exc.error_count() - MAX_REPORTED_ERRORS
    if remaining > 0:
        messages.append(f"and {remaining} more")
    return "; ".join(messages)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
