"""The common V2 JSON request and response, decoded and encoded without the wire models.

Most requests are one or a few numeric tensors with flat `data`, and most answers numeric tensors in JSON.
For those, `decode_flat_request` parses the body once (orjson) and turns each tensor's data into numpy with
one conversion in the declared dtype, and `encode_json_response` writes the answer with orjson straight
from numpy. Each gives the same result as the general codec (maas.protocol.v2_codec) or declines with None
for the general codec to take over: nested or empty data, BYTES and BOOL, binary tensors, output
parameters, integers sent for a float tensor, any value out of the dtype's range, anything malformed. So
every error message is still the general codec's; only a shape beyond the limits is refused here, by the
very check the general codec makes, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from maas.datatypes import DATATYPES, Datatype
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.protocol.json_depth import check_depth, check_leading_depth
from maas.protocol.tensor_codec import TensorLimits, check_shape
from maas.protocol.v2_codec import BINARY_DATA_OUTPUT, DecodedInferRequest, input_location

_BODY_FIELDS = frozenset({"id", "inputs", "outputs", "parameters", "model_name", "model_version"})
_INPUT_FIELDS = frozenset({"name", "shape", "datatype", "data"})
_OUTPUT_FIELDS = frozenset({"name"})
# The element type a flat list must hold throughout: integers in a float tensor go to the general codec,
# which converts them exactly (numpy would round a large one through float64 on the way to float32).
_ELEMENT_TYPE = {"f": float, "i": int, "u": int}
_NUMERIC: Mapping[str, Datatype] = {d.v2: d for d in DATATYPES if d.numpy.kind in _ELEMENT_TYPE}
# Floats narrower than JSON's doubles, and their largest finite value (JSON has no NaN or Infinity).
_LARGEST_FLOAT = {np.dtype(t): float(np.finfo(t).max) for t in (np.float16, np.float32)}
_OPTIONAL_STRING = frozenset({str, type(None)})
_INTEGER = frozenset({int})
# The types orjson reads a scalar as (exactly these: it makes no subclasses).
PARAMETER_SCALARS = frozenset({str, int, float, bool, type(None)})
# Output kinds written from numpy: floats widen to float64 first, so each value is written as the general
# codec writes it (the double nearest the float32, not the float32's own shortest form).
_WRITTEN_KINDS = frozenset("fiub")

_Input = tuple[int, str, Datatype, list[int], list[Any]]


def decode_flat_request(body: str | bytes, limits: TensorLimits) -> DecodedInferRequest | None:
    """The request, when its body is plain JSON with flat numeric tensors; None for the general codec."""
    document = parse_json(body)
    fields = plain_fields(document)
    if fields is None or BINARY_DATA_OUTPUT in fields.parameters:
        return None
    inputs = _plain_inputs(document.get("inputs"))
    outputs = _output_names(document.get("outputs"))
    if inputs is None or outputs is None:
        return None
    parameters = fields.parameters
    # The general codec's checks, in its order: the free-form fields' depth, then each input's shape.
    if parameters:
        check_depth(parameters, "parameters", limits.max_json_depth, above=1)
    for index, _, _, _, data in inputs:
        check_leading_depth(data, f"inputs[{index}].data", limits.max_json_depth, above=3)
    tensors: list[Tensor] = []
    for index, name, datatype, shape, data in inputs:
        array = _flat_array(data, datatype, shape, input_location(index, name), limits)
        if array is None:
            return None
        tensors.append(Tensor(name, datatype.v2, array))
    return DecodedInferRequest(
        request=InferenceRequest(
            inputs=tensors, outputs=outputs or None, id=fields.id, parameters=parameters
        ),
        model_name=fields.model_name,
        model_version=fields.model_version,
    )


def parse_json(text: str | bytes | memoryview) -> Any:
    """The parsed document; None for text that is not JSON (orjson's reading: NaN and integers past 64 bits
    are not), which the general codec then reads and names."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _plain_inputs(inputs: object) -> list[_Input] | None:
    if type(inputs) is not list or not inputs:
        return None
    plain: list[_Input] = []
    for index, item in enumerate(inputs):
        tensor = plain_tensor(item, _INPUT_FIELDS, _NUMERIC)
        if tensor is None or type(item["data"]) is not list:
            return None
        plain.append((index, *tensor, item["data"]))
    return plain


def plain_tensor(
    item: Any, fields: frozenset[str], datatypes: Mapping[str, Datatype]
) -> tuple[str, Datatype, list[int]] | None:
    """An input's name, datatype and shape, when it is an object of exactly `fields` with a string name, a
    datatype among `datatypes` and integers for a shape; None otherwise."""
    if type(item) is not dict or item.keys() != fields:
        return None
    name, shape = item["name"], item["shape"]
    datatype = datatypes.get(item["datatype"]) if type(item["datatype"]) is str else None
    if (
        datatype is None
        or type(name) is not str
        or type(shape) is not list
        or not set(map(type, shape)) <= _INTEGER
    ):
        return None
    return name, datatype, shape


def _output_names(outputs: object) -> list[str] | None:
    """The requested output names, [] for all outputs (none listed), None when the general codec must
    read them."""
    if outputs is None:
        return []
    if type(outputs) is not list or not outputs:
        return None
    names: list[str] = []
    for output in outputs:
        if type(output) is not dict or output.keys() != _OUTPUT_FIELDS or type(output["name"]) is not str:
            return None
        names.append(output["name"])
    return names


class PlainFields(NamedTuple):
    """A request body's fields besides its tensors."""

    parameters: dict[str, Any]
    id: str | None
    model_name: str | None
    model_version: str | None


def plain_fields(document: Any) -> PlainFields | None:
    """The fields besides the tensors, when the document is an object of known fields whose parameters are
    scalars (or absent) and whose id and model names are strings (or absent); None otherwise."""
    if type(document) is not dict or not document.keys() <= _BODY_FIELDS:
        return None
    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    elif type(parameters) is not dict or not set(map(type, parameters.values())) <= PARAMETER_SCALARS:
        return None
    fields = PlainFields(
        parameters, document.get("id"), document.get("model_name"), document.get("model_version")
    )
    return fields if set(map(type, fields[1:])) <= _OPTIONAL_STRING else None


def _flat_array(
    data: list[Any], datatype: Datatype, shape: list[int], where: str, limits: TensorLimits
) -> npt.NDArray[Any] | None:
    count = check_shape(shape, where, limits)
    element = _ELEMENT_TYPE[datatype.numpy.kind]
    # One pass in C over the element types: floats only, or integers only (bool is neither).
    if count == 0 or len(data) != count or set(map(type, data)) != {element}:
        return None
    largest = _LARGEST_FLOAT.get(datatype.numpy)
    if largest is not None and (max(data) > largest or min(data) < -largest):
        return None  # 1e39 as FP32 may overflow: the general codec decides, and names it
    try:
        array = np.asarray(data, dtype=datatype.numpy)
    except OverflowError:
        return None  # an integer outside the dtype: the general codec names the range
    return array.reshape(shape)


def encode_json_response(response: InferenceResponse) -> bytes | None:
    """The JSON body the general codec writes for an answer of numeric tensors; None for any other."""
    if response.parameters:
        return None
    outputs: list[dict[str, Any]] = []
    for tensor in response.outputs:
        output = json_output(tensor)
        if output is None:
            return None
        outputs.append(output)
    return dump_response(response, outputs)


def json_output(tensor: Tensor) -> dict[str, Any] | None:
    """A numeric output as the general codec writes it in JSON, `data` still numpy; None for any other."""
    array = tensor.array
    if array.dtype.kind not in _WRITTEN_KINDS or not array.dtype.isnative:
        return None
    data = array.astype(np.float64, copy=False) if array.dtype.kind == "f" else array
    shape = list(array.shape)
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": shape, "data": data.ravel()}


def dump_response(response: InferenceResponse, outputs: list[dict[str, Any]]) -> bytes | None:
    """The response document around its outputs, in the general codec's field order; None when orjson
    cannot write it."""
    body: dict[str, Any] = {"model_name": response.model_name, "model_version": str(response.model_version)}
    if response.id is not None:
        body["id"] = response.id
    body["outputs"] = outputs
    try:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        return None
