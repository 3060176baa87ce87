"""KServe V1 on the wire: `instances` decoded against the model's signature, `predictions` encoded back.

V1 carries no names or datatypes, so every case names the signature that supplies them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from maas.errors import InvalidInput, MaasError, PayloadTooLarge
from maas.infer_types import InferenceResponse, Tensor
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v1_codec import decode_predict_request, encode_predict_response, predictions
from maas.signature import Signature, TensorSpec

LIMITS = TensorLimits(max_batch=4, max_elements=64, max_string_bytes=8, max_json_depth=6)
OUTPUTS = [TensorSpec(name="y", datatype="FP32", shape=[-1])]


def single(datatype: str, shape: list[int], name: str = "x") -> Signature:
    return Signature(inputs=[TensorSpec(name=name, datatype=datatype, shape=shape)], outputs=OUTPUTS)


FP32_ROWS = single("FP32", [-1, 2])
INT8_ROWS = single("INT8", [-1, 2])
TEXT = single("BYTES", [-1], name="text")
FLAGS = single("BOOL", [-1], name="flag")
TWO_INPUTS = Signature(
    inputs=[
        TensorSpec(name="ids", datatype="INT64", shape=[-1, 2]),
        TensorSpec(name="scale", datatype="FP32", shape=[-1]),
    ],
    outputs=OUTPUTS,
)


@pytest.mark.parametrize(
    ("signature", "instances", "dtype", "shape"),
    [
        pytest.param(FP32_ROWS, [[1, 2], [3.5, 4]], np.float32, (2, 2), id="FP32 rows"),
        pytest.param(single("INT64", [-1]), [1, 2, 3], np.int64, (3,), id="INT64 scalars"),
        pytest.param(single("FP16", [-1, 1, 2]), [[[1, 2]], [[3, 4]]], np.float16, (2, 1, 2), id="FP16 3-d"),
        pytest.param(single("UINT8", [-1, 2]), [[0, 255]], np.uint8, (1, 2), id="UINT8 full range"),
        pytest.param(TEXT, ["a", "déf"], object, (2,), id="BYTES text"),
        pytest.param(FLAGS, [True, False], np.bool_, (2,), id="BOOL"),
    ],
)
def test_a_single_input_model_takes_its_rows_as_the_instances(
    signature: Signature, instances: list[Any], dtype: type, shape: tuple[int, ...]
) -> None:
    request = decode_predict_request(json.dumps({"instances": instances}), signature, LIMITS)

    (tensor,) = request.inputs
    spec = signature.inputs[0]
    assert (tensor.name, tensor.datatype) == (spec.name, spec.datatype)
    assert tensor.array.dtype == dtype
    assert tensor.array.shape == shape
    assert tensor.array.tolist() == instances
    assert request.parameters == {}


def test_a_multi_input_model_takes_one_object_per_instance_in_any_key_order() -> None:
    body = {
        "instances": [{"ids": [1, 2], "scale": 0.5}, {"scale": 2.0, "ids": [3, 4]}],
        "parameters": {"note": {"kept": True}},
    }

    request = decode_predict_request(json.dumps(body).encode(), TWO_INPUTS, LIMITS)

    ids, scale = request.inputs
    assert [(tensor.name, tensor.datatype, str(tensor.array.dtype)) for tensor in request.inputs] == [
        ("ids", "INT64", "int64"),
        ("scale", "FP32", "float32"),
    ]
    assert ids.array.tolist() == [[1, 2], [3, 4]]
    assert scale.array.tolist() == [0.5, 2.0]
    assert request.parameters == {"note": {"kept": True}}


TOO_DEEP = "expected JSON nested at most 6 levels deep (MAAS_MAX_JSON_DEPTH), got deeper"
# Each body as a model of FP32 rows [-1, 2] gets it, and the exact message it is refused with (400).
BAD_BODIES = {
    "not json": "request body: expected JSON, got invalid JSON (expected ident at line 1 column 2)",
    "{}": "instances: required field is missing",
    '{"instances": []}': "instances: expected at least 1 item(s), got none",
    '{"instances": 3}': "instances: input should be a valid array, got integer",
    '{"instances": [[1, 2]], "extra": 1}': "extra: unknown field",
    '{"instances": [[1, 2]], "parameters": []}': "parameters: expected a JSON object, got array",
    '{"instances": [[[[[[[1]]]]]]]}': f"instances: {TOO_DEEP}",
    '{"instances": [[1, 2]], "parameters": {"a": {"b": {"c": {"d": {"e": {}}}}}}}': f"parameters: {TOO_DEEP}",
}


@pytest.mark.parametrize(("body", "message"), BAD_BODIES.items())
def test_a_body_that_is_not_a_v1_request_is_refused_saying_where_and_why(body: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        decode_predict_request(body, FP32_ROWS, LIMITS)

    assert raised.value.message == message


# Instances that make no tensor of the signature's datatypes, and the exact message (400; 413 past a limit).
BAD_INSTANCES: list[tuple[Signature, list[Any], str]] = [
    (FP32_ROWS, [[1, 2], [3]], "instances.data: expected a flat or nested list, got a ragged nested list"),
    (FP32_ROWS, [["a", "b"]], "instances.data: expected FP32 values, got strings"),
    (FP32_ROWS, [[True, False]], "instances.data: expected FP32 values, got booleans"),
    (
        FP32_ROWS,
        [[1, None]],
        "instances.data: expected FP32 values, got integers beyond 64 bits or mixed types",
    ),
    (INT8_ROWS, [[1, 300]], "instances.data: expected INT8 values in [-128, 127], got some outside"),
    (INT8_ROWS, [[1.5, 2]], "instances.data: expected INT8 values, got numbers with a fraction"),
    (TEXT, [1], "instances.data: expected BYTES values, got integers"),
    (FLAGS, [1, 0], "instances.data: expected BOOL values, got integers"),
    (FP32_ROWS, [[1, 2]] * 5, "instances.shape: expected a batch of at most 4 (MAAS_MAX_BATCH), got 5"),
    (
        TEXT,
        ["short", "much too long"],
        "instances: BYTES element 1 holds 13 bytes, expected at most 8 (MAAS_MAX_STRING_BYTES)",
    ),
    # A multi-input model's instances are objects with exactly its input names.
    (TWO_INPUTS, [[1, 2]], "instances[0]: expected an object with keys ['ids', 'scale'], got array"),
    (
        TWO_INPUTS,
        [{"ids": [1, 2]}],
        "instances[0]: expected an object with keys ['ids', 'scale'], got ['ids']",
    ),
    (
        TWO_INPUTS,
        [{"ids": [1, 2], "scale": 1.0, "other": 1}],
        "instances[0]: expected an object with keys ['ids', 'scale'], got ['ids', 'other', 'scale']",
    ),
    (
        TWO_INPUTS,
        [{"ids": [1, 2], "scale": 1.0}, {"ids": [1], "scale": 2.0}],
        "instances[*].ids.data: expected a flat or nested list, got a ragged nested list",
    ),
    (
        TWO_INPUTS,
        [{"ids": [[[[[1]]]]], "scale": 1.0}],
        f"instances[*].ids: {TOO_DEEP}",
    ),
]


@pytest.mark.parametrize(("signature", "instances", "message"), BAD_INSTANCES)
def test_bad_instances_are_refused_with_where_what_was_expected_and_what_came(
    signature: Signature, instances: list[Any], message: str
) -> None:
    with pytest.raises(MaasError) as raised:
        decode_predict_request(json.dumps({"instances": instances}), signature, LIMITS)

    assert raised.value.message == message
    expected = (
        PayloadTooLarge
        if "(MAAS_MAX_BATCH)" in message or "(MAAS_MAX_STRING_BYTES)" in message
        else InvalidInput
    )
    assert type(raised.value) is expected


def tensor(name: str, datatype: str, values: Any, dtype: Any) -> Tensor:
    return Tensor(name, datatype, np.array(values, dtype=dtype))


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        pytest.param(
            [tensor("y", "FP32", [[0.5], [1.5]], np.float32)], [[0.5], [1.5]], id="one output's rows"
        ),
        pytest.param(
            [tensor("y", "FP32", [np.nan, np.inf], np.float32)], [None, None], id="NaN and inf as null"
        ),
        pytest.param([tensor("y", "BYTES", [b"a", "d\u00e9f"], object)], ["a", "déf"], id="text as strings"),
        pytest.param(
            [
                tensor("label", "INT64", [1, 2], np.int64),
                tensor("probs", "FP32", [[0.25, 0.75], [0.5, 0.5]], np.float32),
            ],
            [{"label": 1, "probs": [0.25, 0.75]}, {"label": 2, "probs": [0.5, 0.5]}],
            id="one object per row for several outputs",
        ),
        pytest.param(
            [
                tensor("y", "FP16", [[[1, 2]], [[3, 4]]], np.float16),
                tensor("ok", "BOOL", [True, False], bool),
            ],
            [{"y": [[1.0, 2.0]], "ok": True}, {"y": [[3.0, 4.0]], "ok": False}],
            id="rows of any rank",
        ),
        pytest.param(
            [tensor("y", "FP32", 3.0, np.float32), tensor("n", "INT64", 2, np.int64)],
            [{"y": 3.0, "n": 2}],
            id="0-d outputs as one row",
        ),
    ],
)
def test_predictions_are_the_rows_of_one_output_or_an_object_per_row(
    outputs: list[Tensor], expected: list[Any]
) -> None:
    encoded = json.loads(encode_predict_response(InferenceResponse("m", 1, outputs)))

    assert encoded == {"predictions": expected}


def test_predictions_keep_a_single_outputs_rows_as_python_values() -> None:
    rows = predictions([tensor("y", "INT64", [[1, 2], [3, 4]], np.int64)])

    assert rows == [[1, 2], [3, 4]]
    assert all(type(value) is int for row in rows for value in row)
