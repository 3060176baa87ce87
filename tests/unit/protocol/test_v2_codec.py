from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from maas.datatypes import DATATYPES, from_numpy, from_onnx, from_v2
from maas.errors import InvalidInput, PayloadTooLarge
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import decode_infer_request, encode_infer_response

LIMITS = TensorLimits(max_batch=64, max_elements=1000)


def decode(raw: str | bytes) -> InferenceRequest:
    return decode_infer_request(raw, LIMITS).request


def encode(response: InferenceResponse) -> Any:
    return json.loads(encode_infer_response(response).content)


SAMPLE_DATA: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "BYTES": ["a", "bc", "", "déf"],
    "FP16": [0.5, -1.0, 2.0, 3.25],
    "FP32": [0.5, -1.0, 2.0, 3.25],
    "FP64": [0.5, -1.0, 2.0, 3.25],
}


def body(**input_fields: Any) -> str:
    item = {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}
    item.update(input_fields)
    return json.dumps({"inputs": [item]})


@pytest.mark.parametrize("datatype", [d.v2 for d in DATATYPES])
def test_every_v2_datatype_decodes_to_its_numpy_dtype_and_back(datatype: str) -> None:
    values = SAMPLE_DATA.get(datatype, [0, 1, 2, 3])
    request = decode(body(datatype=datatype, data=values))
    tensor = request.inputs[0]
    assert tensor.array.dtype == from_v2(datatype).numpy  # type: ignore[union-attr]
    assert tensor.array.shape == (2, 2)

    encoded = encode(InferenceResponse("m", 1, [tensor]))
    output = encoded["outputs"][0]
    assert output == {"name": "x", "datatype": datatype, "shape": [2, 2], "data": values}


def test_nested_and_flat_data_decode_identically() -> None:
    flat = decode(body(data=[1, 2, 3, 4])).inputs[0].array
    nested = decode(body(data=[[1, 2], [3, 4]])).inputs[0].array
    assert np.array_equal(flat, nested)


def test_request_id_outputs_and_parameters_are_kept() -> None:
    payload = json.loads(body())
    payload.update(id="abc", outputs=[{"name": "y"}], parameters={"k": 1})
    request = decode(json.dumps(payload))
    assert (request.id, request.outputs, request.parameters) == ("abc", ["y"], {"k": 1})


def test_response_echoes_the_id_and_reports_the_version_as_a_string() -> None:
    response = InferenceResponse("m", 7, [Tensor("y", "FP32", np.zeros((1, 2), np.float32))], id="r1")
    assert encode(response) == {
        "model_name": "m",
        "model_version": "7",
        "id": "r1",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.0, 0.0]}],
    }


@pytest.mark.parametrize(
    ("raw", "expected_fragment"),
    [
        ("{not json", "request body: expected JSON, got invalid JSON"),
        ("", "request body: expected JSON, got invalid JSON"),
        ("[1, 2]", "request body: expected a JSON object, got array"),
        ("{}", "inputs: required field is missing"),
        ('{"inputs": []}', "inputs: expected at least 1 item(s), got none"),
        ('{"inputs": [5]}', "inputs[0]: expected a JSON object, got integer"),
        (body(shape="2x2"), "inputs[0].shape: input should be a valid array, got string"),
        (body(shape=[2, "2"]), "inputs[0].shape[1]: input should be a valid integer, got string"),
        (body(data=7), "inputs[0].data: input should be a valid array, got integer"),
        (body(datatype="FLOAT32"), "inputs[0] ('x').datatype: expected one of ['BOOL',"),
        (body(shape=[2, -2]), "inputs[0] ('x').shape: expected non-negative dimensions, got [2, -2]"),
        (body(shape=[3, 2]), "inputs[0] ('x').data: shape [3, 2] needs 6 elements, got 4"),
        (body(data=[[1, 2], [3]]), "inputs[0] ('x').data: expected a flat or nested list, got a ragged"),
        (body(data=["a", "b", "c", "d"]), "inputs[0] ('x').data: expected FP32 values, got strings"),
        (body(datatype="INT32", data=[1.5, 2, 3, 4]), "expected INT32 values, got numbers with a fraction"),
        (body(datatype="UINT8", data=[1, 2, 3, 300]), "expected UINT8 values in [0, 255], got some outside"),
        (body(datatype="BOOL", data=[1, 0, 1, 0]), "expected BOOL values, got integers"),
        (body(colour="red"), "inputs[0].colour: unknown field"),
    ],
)
def test_malformed_requests_say_where_what_was_expected_and_what_came(
    raw: str, expected_fragment: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode(raw)
    assert expected_fragment in caught.value.message
    assert caught.value.status == 400


def test_error_messages_never_echo_payload_values() -> None:
    secret = "patient-4711-diagnosis"
    for raw in (
        body(data=[secret] * 4),
        body(shape=secret),
        json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "x": secret}]}),
        '{"inputs": "' + secret + '"}',
        '{"id": "' + secret + '", broken',
    ):
        with pytest.raises(InvalidInput) as caught:
            decode(raw)
        assert secret not in caught.value.message


def test_datatype_table_is_consistent_in_every_direction() -> None:
    for datatype in DATATYPES:
        assert from_v2(datatype.v2) is datatype
        assert from_onnx(datatype.onnx) is datatype
        if datatype.v2 != "BYTES":
            assert from_numpy(datatype.numpy) is datatype
    assert from_numpy(np.dtype("<U3")).v2 == "BYTES"  # type: ignore[union-attr]


# ---- limits the codec enforces: JSON depth and text element size

SMALL = TensorLimits(max_batch=64, max_elements=1000, max_string_bytes=8, max_json_depth=6)


def text_body(texts: list[str], **input_fields: Any) -> str:
    item = {"name": "t", "datatype": "BYTES", "shape": [len(texts)], "data": texts, **input_fields}
    return json.dumps({"inputs": [item]})


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        # The root object and the request's parameters are levels 1 and 2: 4 more fit within 6.
        (json.dumps({"parameters": {"a": {"b": {"c": {"d": {}}}}}, "inputs": []}), None),
        ({**json.loads(text_body(["a"])), "parameters": {"a": {"b": {"c": {"d": {"e": {}}}}}}}, "parameters"),
        # Root, inputs, the input and its parameters are levels 1 to 4.
        (text_body(["a"], parameters={"a": {"b": {"c": []}}}), "inputs[0].parameters"),
        (text_body(["a"], shape=[1, 1, 1, 1], data=[[[["a"]]]]), "inputs[0].data"),
    ],
)
def test_fields_nested_past_the_depth_limit_are_named(raw: str | dict[str, Any], where: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_infer_request(raw if isinstance(raw, str) else json.dumps(raw), SMALL)
    if where is None:  # within the limit: refused for another reason (no inputs)
        assert "levels deep" not in caught.value.message
    else:
        assert caught.value.message == (
            f"{where}: expected JSON nested at most 6 levels deep (MAAS_MAX_JSON_DEPTH), got deeper"
        )


def test_requests_within_the_limits_decode() -> None:
    raw = text_body(
        ["12345678", "é" * 4], shape=[1, 2], data=[["12345678", "é" * 4]], parameters={"a": {"b": 1}}
    )

    (tensor,) = decode_infer_request(raw, SMALL).request.inputs

    assert tensor.array.tolist() == [["12345678", "é" * 4]]


def test_a_text_element_over_the_limit_is_413_without_its_text() -> None:
    secret = "SSN-123-45-6789"

    with pytest.raises(PayloadTooLarge) as caught:
        decode_infer_request(text_body(["ok", secret]), SMALL)

    assert caught.value.message == (
        "inputs[0] ('t'): BYTES element 1 holds 15 bytes, expected at most 8 (MAAS_MAX_STRING_BYTES)"
    )
    assert secret not in caught.value.message
