"""The common Triton binary request and answer, decoded and encoded without the wire models.

A binary request (https://github.com/triton-inference-server/server/blob/main/docs/protocol/
extension_binary_data.md) is a JSON header followed by each input's raw bytes. When every input is a binary
numeric or BOOL tensor, `decode_binary_request` parses the header once (orjson) and views each tensor's
bytes with the general codec's own `array_from_binary` (np.frombuffer: no copy where the bytes are aligned).
`encode_binary_response` writes the header with orjson and each binary output's bytes with the general
codec's `array_to_binary`, so the body is the general codec's to the byte.

As in maas.protocol.v2_flat_codec, anything else declines with None and the general codec takes over:
JSON or BYTES inputs, nested or unusual parameters, a header length or a binary size that does not fit the
body, bytes left over. The checks that can refuse a plain request are the general codec's own functions,
called in its order, so every error message is still its own.
"""

from __future__ import annotations

from typing import Any

from maas.datatypes import BY_V2, Datatype
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.protocol.json_depth import check_depth
from maas.protocol.tensor_codec import TensorLimits, array_from_binary, array_to_binary, check_shape
from maas.protocol.v2_codec import (
    BINARY_DATA,
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    DecodedInferRequest,
    EncodedBody,
    input_location,
)
from maas.protocol.v2_flat_codec import (
    PARAMETER_SCALARS,
    dump_response,
    json_output,
    parse_json,
    plain_fields,
    plain_tensor,
)

_INPUT_FIELDS = frozenset({"name", "shape", "datatype", "parameters"})
_OUTPUT_FIELDS = frozenset({"name", "parameters"})
# BYTES is length-prefixed element by element: the general codec reads it.
_FIXED_WIDTH: dict[str, Datatype] = {name: d for name, d in BY_V2.items() if name != "BYTES"}
_FLAG = frozenset({bool, type(None)})
# What tritonclient sends as a binary input's parameters; any other parameter goes to the general codec.
_SIZE_ONLY = frozenset({BINARY_DATA_SIZE})
# The depth of a parameters object of scalars: below the root's field, and below an input's or output's.
_FIELD_DEPTH, _TENSOR_FIELD_DEPTH = 2, 4

# (index, name, datatype, shape, binary_data_size, the input's parameters)
_BinaryInput = tuple[int, str, Datatype, list[int], int, dict[str, Any]]
# (name, its binary_data flag or None, its parameters or None)
_Output = tuple[str, bool | None, dict[str, Any] | None]


def decode_binary_request(
    body: str | bytes, header_length: int, limits: TensorLimits
) -> DecodedInferRequest | None:
    """The request, when its header is plain JSON and every input is a binary fixed-width tensor; None for
    the general codec."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if header_length > len(raw):
        return None
    view = memoryview(raw)
    document = parse_json(view[:header_length])
    fields = plain_fields(document)
    if fields is None or type(fields.parameters.get(BINARY_DATA_OUTPUT)) not in _FLAG:
        return None
    inputs = _binary_inputs(document.get("inputs"))
    outputs = _outputs(document.get("outputs"))
    if inputs is None or outputs is None:
        return None
    parameters = fields.parameters
    # Every parameters object here holds scalars only, so it is exactly one level below its field, and
    # only a limit that low can refuse it.
    limit = limits.max_json_depth
    if parameters and limit < _FIELD_DEPTH:
        check_depth(parameters, "parameters", limit, above=1)
    if limit < _TENSOR_FIELD_DEPTH:
        for index, _, _, _, _, input_parameters in inputs:
            check_depth(input_parameters, f"inputs[{index}].parameters", limit, above=3)
        for index, (_, _, output_parameters) in enumerate(outputs):
            if output_parameters:
                check_depth(output_parameters, f"outputs[{index}].parameters", limit, above=3)
    binary = view[header_length:]
    offset = 0
    tensors: list[Tensor] = []
    for index, name, datatype, shape, size, _ in inputs:
        where = input_location(index, name)
        check_shape(shape, where, limits)
        if size > len(binary) - offset:
            return None
        chunk = binary[offset : offset + size]
        array = array_from_binary(chunk, datatype, shape, where, max_string_bytes=limits.max_string_bytes)
        tensors.append(Tensor(name, datatype.v2, array))
        offset += size
    if offset != len(binary):
        return None
    return DecodedInferRequest(
        request=InferenceRequest(
            inputs=tensors,
            outputs=None if document.get("outputs") is None else [name for name, _, _ in outputs],
            id=fields.id,
            parameters=parameters,
        ),
        binary_by_output={name: flag for name, flag, _ in outputs if flag is not None},
        binary_by_default=bool(parameters.get(BINARY_DATA_OUTPUT)),
        model_name=fields.model_name,
        model_version=fields.model_version,
    )


def _binary_inputs(inputs: object) -> list[_BinaryInput] | None:
    if type(inputs) is not list or not inputs:
        return None
    plain: list[_BinaryInput] = []
    for index, item in enumerate(inputs):
        tensor = plain_tensor(item, _INPUT_FIELDS, _FIXED_WIDTH)
        if tensor is None:
            return None
        parameters = item["parameters"]
        if type(parameters) is not dict or parameters.keys() != _SIZE_ONLY:
            return None
        size = parameters[BINARY_DATA_SIZE]
        if type(size) is not int or size < 0:
            return None
        plain.append((index, *tensor, size, parameters))
    return plain


def _outputs(outputs: object) -> list[_Output] | None:
    """The requested outputs, [] for all (none listed), None when the general codec must read them."""
    if outputs is None:
        return []
    if type(outputs) is not list or not outputs:
        return None
    plain: list[_Output] = []
    for output in outputs:
        if (
            type(output) is not dict
            or not output.keys() <= _OUTPUT_FIELDS
            or type(output.get("name")) is not str
        ):
            return None
        parameters = output.get("parameters")
        if parameters is None:
            plain.append((output["name"], None, None))
            continue
        if type(parameters) is not dict or not set(map(type, parameters.values())) <= PARAMETER_SCALARS:
            return None
        flag = parameters.get(BINARY_DATA)
        if type(flag) not in _FLAG:
            return None  # not true or false: the general codec names it
        plain.append((output["name"], flag, parameters))
    return plain


def encode_binary_response(response: InferenceResponse, decoded: DecodedInferRequest) -> EncodedBody | None:
    """The body the general codec writes for an answer of fixed-width tensors, each binary where the request
    asked for it; None for any other answer."""
    if response.parameters:
        return None
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        if not decoded.wants_binary(tensor.name):
            output = json_output(tensor)
            if output is None:
                return None
            outputs.append(output)
            continue
        datatype = _FIXED_WIDTH.get(tensor.datatype)
        if datatype is None:
            return None
        chunk = array_to_binary(tensor.array, datatype)
        chunks.append(chunk)
        outputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.array.shape),
                "parameters": {BINARY_DATA_SIZE: len(chunk)},
            }
        )
    header = dump_response(response, outputs)
    if header is None:
        return None
    if not chunks:
        return EncodedBody(header)
    return EncodedBody(b"".join([header, *chunks]), header_length=len(header))
