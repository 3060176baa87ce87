"""KServe V1 `{"instances": [...]}` <-> the internal request/response types.

V1 carries no datatypes or names, so the model's signature supplies them: a single-input model takes rows,
a multi-input model takes one {input_name: row} object per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from maas.datatypes import BY_V2
from maas.errors import InvalidInput
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.protocol.json_depth import check_depth, check_leading_depth
from maas.protocol.tensor_codec import TensorLimits, array_from_json, array_to_json, check_shape, nested_shape
from maas.protocol.v1_types import PredictRequest, PredictResponse
from maas.protocol.validation_messages import describe_validation_error, json_type
from maas.signature import Signature, TensorSpec


def decode_predict_request(body: str | bytes, signature: Signature, limits: TensorLimits) -> InferenceRequest:
    try:
        wire = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, max_json_depth=limits.max_json_depth)) from None
    if wire.parameters:
        check_depth(wire.parameters, "parameters", limits.max_json_depth, above=1)
    if len(signature.inputs) == 1:
        spec = signature.inputs[0]
        # Above the instances array: only the root object.
        check_leading_depth(wire.instances, "instances", limits.max_json_depth, above=1)
        return InferenceRequest(
            inputs=[_column(spec, wire.instances, "instances", limits)], parameters=wire.parameters or {}
        )
    names = [spec.name for spec in signature.inputs]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, instance in enumerate(wire.instances):
        if not isinstance(instance, dict) or sorted(instance) != sorted(names):
            got = sorted(instance) if isinstance(instance, dict) else json_type(instance)
            raise InvalidInput(f"instances[{index}]: expected an object with keys {names}, got {got}")
        for name in names:
            columns[name].append(instance[name])
    for name, column in columns.items():
        # A column stands for the instances array; the root object and each instance's object sit above
        # its rows.
        check_leading_depth(column, f"instances[*].{name}", limits.max_json_depth, above=2)
    return InferenceRequest(
        inputs=[
            _column(spec, columns[spec.name], f"instances[*].{spec.name}", limits)
            for spec in signature.inputs
        ],
        parameters=wire.parameters or {},
    )


def _column(spec: TensorSpec, rows: list[Any], where: str, limits: TensorLimits) -> Tensor:
    # The shape the rows claim; array_from_json then refuses rows that do not all agree with it. (np.shape
    # would build the array twice, and for text, one as wide as the longest string per element.)
    shape = nested_shape(rows)
    check_shape(shape, where, limits)
    array = array_from_json(
        rows, BY_V2[spec.datatype], shape, where, max_string_bytes=limits.max_string_bytes
    )
    return Tensor(spec.name, spec.datatype, array)


def encode_predict_response(response: InferenceResponse) -> str:
    return PredictResponse(predictions=predictions(response.outputs)).model_dump_json()


def predictions(outputs: Sequence[Tensor]) -> list[Any]:
    """V1's predictions: the rows of a single output, or one {output: row} object per row."""
    if len(outputs) == 1:
        rows: list[Any] = outputs[0].array.tolist()
        return rows
    count = len(outputs[0].array) if outputs[0].array.ndim else 1
    return [{tensor.name: _row(tensor.array, index) for tensor in outputs} for index in range(count)]


def _row(array: np.ndarray[Any, Any], index: int) -> Any:
    row = array[index] if array.ndim else array
    return array_to_json(row) if isinstance(row, np.ndarray) and row.ndim == 1 else np.asarray(row).tolist()
