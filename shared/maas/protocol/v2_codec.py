"""Open Inference Protocol V2 <-> the internal request/response types, in JSON and Triton's binary tensor
format (https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md).

A binary request is a JSON header of `Inference-Header-Content-Length` bytes followed by each binary input's
bytes in input order; a binary response is laid out the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from maas.datatypes import BY_V2, V2_NAMES
from maas.errors import InvalidInput
from maas.infer_types import InferenceRequest, InferenceResponse, ModelMetadata, Tensor
from maas.protocol.json_depth import check_depth, check_leading_depth
from maas.protocol.tensor_codec import (
    TensorLimits,
    array_from_binary,
    array_from_json,
    array_to_binary,
    array_to_json,
    check_shape,
)
from maas.protocol.v2_types import (
    HttpInferenceRequestBody,
    InferenceRequestBody,
    InferenceResponseBody,
    MetadataTensor,
    ModelMetadataResponse,
    RequestInput,
    ResponseOutput,
)
from maas.protocol.validation_messages import describe_validation_error
from maas.signature import TensorSpec

BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_ECHOED_NAME = 64


@dataclass(frozen=True, slots=True)
class DecodedInferRequest:
    request: InferenceRequest
    # An output's own `binary_data` wins; otherwise the request's `binary_data_output` decides.
    binary_by_output: Mapping[str, bool] = field(default_factory=dict)
    binary_by_default: bool = False
    # The body's own naming of the model, which the route checks against its path.
    model_name: str | None = None
    model_version: str | None = None

    def wants_binary(self, output: str) -> bool:
        return self.binary_by_output.get(output, self.binary_by_default)


@dataclass(frozen=True, slots=True)
class EncodedBody:
    content: bytes
    # Set for binary responses: the length of the JSON header at the start of `content`.
    header_length: int | None = None


def decode_infer_request(
    body: str | bytes, limits: TensorLimits, *, header_length: int | None = None
) -> DecodedInferRequest:
    if header_length is None:
        header: str | bytes | memoryview = body
        binary = memoryview(b"")
    else:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        if header_length > len(raw):
            raise InvalidInput(
                f"{HEADER_LENGTH}: expected at most the body size ({len(raw)} bytes), got {header_length}"
            )
        view = memoryview(raw)
        header, binary = view[:header_length], view[header_length:]
    try:
        wire = HttpInferenceRequestBody.model_validate_json(
            bytes(header) if isinstance(header, memoryview) else header
        )
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, max_json_depth=limits.max_json_depth)) from None
    decoded = decode_wire_request(wire, limits, binary, may_hold_booleans=_has_boolean_literal(header))
    return replace(decoded, model_name=wire.model_name, model_version=wire.model_version)


def decode_wire_request(
    wire: InferenceRequestBody,
    limits: TensorLimits,
    binary: memoryview | None = None,
    *,
    may_hold_booleans: bool = True,
) -> DecodedInferRequest:
    """The tensors of an already validated request body (HTTP, or an event that carried it as JSON)."""
    binary = binary if binary is not None else memoryview(b"")
    check_request_depth(wire, limits.max_json_depth)
    inputs: list[Tensor] = []
    offset = 0
    for index, item in enumerate(wire.inputs):
        tensor, offset = _decode_input(
            item, index, binary, offset, limits, may_hold_booleans=may_hold_booleans
        )
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(
            f"binary data: {len(binary) - offset} bytes left after the last binary input; "
            f"expected {HEADER_LENGTH} plus the inputs' binary_data_size to cover the body exactly"
        )

    binary_by_output: dict[str, bool] = {}
    for index, output in enumerate(wire.outputs or []):
        wants = (output.parameters or {}).get(BINARY_DATA)
        if wants is not None:
            binary_by_output[output.name] = _flag(wants, f"outputs[{index}].parameters.{BINARY_DATA}")
    request_parameters = wire.parameters or {}
    return DecodedInferRequest(
        request=InferenceRequest(
            inputs=inputs,
            outputs=None if wire.outputs is None else [output.name for output in wire.outputs],
            id=wire.id,
            parameters=request_parameters,
        ),
        binary_by_output=binary_by_output,
        binary_by_default=_flag(
            request_parameters.get(BINARY_DATA_OUTPUT), f"parameters.{BINARY_DATA_OUTPUT}"
        ),
    )


def check_request_depth(wire: InferenceRequestBody, limit: int) -> None:
    """The free-form fields within MAAS_MAX_JSON_DEPTH; the rest of the schema is shallow by construction.

    Above an input's fields sit the root object, the inputs array and the input object: 3 levels."""
    if wire.parameters:
        check_depth(wire.parameters, "parameters", limit, above=1)
    for index, item in enumerate(wire.inputs):
        if item.parameters:
            check_depth(item.parameters, f"inputs[{index}].parameters", limit, above=3)
        if item.data is not None:
            check_leading_depth(item.data, f"inputs[{index}].data", limit, above=3)
    for index, output in enumerate(wire.outputs or []):
        if output.parameters:
            check_depth(output.parameters, f"outputs[{index}].parameters", limit, above=3)


def _has_boolean_literal(header: str | bytes | memoryview) -> bool:
    # A substring search in C: requests without true/false anywhere skip the per-element boolean scan.
    if isinstance(header, str):
        return "true" in header or "false" in header
    raw = bytes(header) if isinstance(header, memoryview) else header
    return b"true" in raw or b"false" in raw


def _decode_input(
    item: RequestInput,
    index: int,
    binary: memoryview,
    offset: int,
    limits: TensorLimits,
    *,
    may_hold_booleans: bool = True,
) -> tuple[Tensor, int]:
    where = input_location(index, item.name)
    datatype = BY_V2.get(item.datatype)
    if datatype is None:
        raise InvalidInput(f"{where}.datatype: expected one of {list(V2_NAMES)}, got {item.datatype[:32]!r}")
    check_shape(item.shape, where, limits)
    size = (item.parameters or {}).get(BINARY_DATA_SIZE)
    if size is None:
        if item.data is None:
            raise InvalidInput(f"{where}.data: required unless parameters.{BINARY_DATA_SIZE} is set")
        array = array_from_json(
            item.data,
            datatype,
            item.shape,
            where,
            may_hold_booleans=may_hold_booleans,
            max_string_bytes=limits.max_string_bytes,
        )
        return Tensor(item.name, datatype.v2, array), offset
    if item.data is not None:
        raise InvalidInput(f"{where}: expected either data or parameters.{BINARY_DATA_SIZE}, got both")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"{where}.parameters.{BINARY_DATA_SIZE}: expected a non-negative integer")
    remaining = len(binary) - offset
    if size > remaining:
        raise InvalidInput(
            f"{where}.parameters.{BINARY_DATA_SIZE}: expected at most the {remaining} binary bytes left "
            f"after {HEADER_LENGTH} and earlier inputs, got {size}"
        )
    array = array_from_binary(
        binary[offset : offset + size], datatype, item.shape, where, max_string_bytes=limits.max_string_bytes
    )
    return Tensor(item.name, datatype.v2, array), offset + size


def input_location(index: int, name: str) -> str:
    """How an error names an input: its position and (the start of) its name."""
    return f"inputs[{index}] ('{name[:MAX_ECHOED_NAME]}')"


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: expected true or false")
    return value


def encode_infer_response(
    response: InferenceResponse, decoded: DecodedInferRequest | None = None
) -> EncodedBody:
    outputs: list[ResponseOutput] = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        if decoded is not None and decoded.wants_binary(tensor.name):
            chunk = array_to_binary(tensor.array, BY_V2[tensor.datatype])
            chunks.append(chunk)
            outputs.append(
                ResponseOutput(
                    name=tensor.name,
                    datatype=tensor.datatype,
                    shape=list(tensor.array.shape),
                    parameters={BINARY_DATA_SIZE: len(chunk)},
                )
            )
        else:
            outputs.append(encode_output(tensor))
    header = response_body(response, outputs).model_dump_json(exclude_none=True).encode()
    if not chunks:
        return EncodedBody(header)
    return EncodedBody(b"".join([header, *chunks]), header_length=len(header))


def response_body(
    response: InferenceResponse, outputs: list[ResponseOutput] | None = None
) -> InferenceResponseBody:
    """The V2 response document; outputs default to JSON tensors (events carry no binary)."""
    return InferenceResponseBody(
        model_name=response.model_name,
        model_version=str(response.model_version),
        id=response.id,
        parameters=response.parameters or None,
        outputs=outputs if outputs is not None else [encode_output(tensor) for tensor in response.outputs],
    )


def encode_output(tensor: Tensor) -> ResponseOutput:
    return ResponseOutput(
        name=tensor.name,
        datatype=tensor.datatype,
        shape=list(tensor.array.shape),
        data=array_to_json(tensor.array),
    )


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
