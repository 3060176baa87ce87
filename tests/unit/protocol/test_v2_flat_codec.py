"""The flat JSON codec gives what the general V2 codec gives, or declines and leaves the request to it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from maas.errors import PayloadTooLarge
from maas.infer_types import InferenceResponse, Tensor
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import decode_infer_request, encode_infer_response
from maas.protocol.v2_flat_codec import decode_flat_request, encode_json_response

LIMITS = TensorLimits(max_batch=64, max_elements=4096)
FLOATS = [0.5, -1.25, 3.0e-7, 1.0e30, 0.1, -0.0]


def body(*inputs: dict[str, Any], **fields: Any) -> str:
    return json.dumps({"inputs": list(inputs), **fields})


def tensor(datatype: str, data: list[Any], shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": datatype, "shape": shape or [len(data)], "data": data, **extra}


DECODED = {
    "FP32": body(tensor("FP32", FLOATS)),
    "FP64": body(tensor("FP64", FLOATS)),
    "FP16": body(tensor("FP16", [0.5, 65504.0, -3.1])),
    "INT8": body(tensor("INT8", [-128, 127, 0])),
    "UINT64": body(tensor("UINT64", [0, 2**64 - 1])),
    "INT64, two rows": body(tensor("INT64", [1, 2, 3, 4], [2, 2])),
    "two inputs, id, outputs, parameters": body(
        tensor("FP32", [1.5]),
        {**tensor("INT32", [7]), "name": "y"},
        id="r-1",
        outputs=[{"name": "out"}],
        parameters={"routing_key": "k"},
    ),
    "body names the model": body(tensor("FP32", [1.5]), model_name="m", model_version="2"),
}

DECLINED = {
    "nested data": body(tensor("FP32", [[1.0, 2.0]], [1, 2])),
    "integers for a float tensor": body(tensor("FP32", [1, 2])),
    "floats for an integer tensor": body(tensor("INT32", [1.5])),
    "a boolean among numbers": body(tensor("FP32", [1.0, True])),
    "out of the integer range": body(tensor("INT8", [300])),
    "a negative unsigned": body(tensor("UINT8", [-1])),
    "beyond FP32": body(tensor("FP32", [1e39])),
    "BYTES": body(tensor("BYTES", ["a"])),
    "BOOL": body(tensor("BOOL", [True])),
    "too few elements": body(tensor("FP32", [1.0], [2])),
    "no elements": body(tensor("FP32", [], [0])),
    "binary output asked for": body(tensor("FP32", [1.0]), parameters={"binary_data_output": True}),
    "output parameters": body(
        tensor("FP32", [1.0]), outputs=[{"name": "o", "parameters": {"binary_data": True}}]
    ),
    "input parameters": body(tensor("FP32", [1.0], parameters={"content_type": "np"})),
    "an unknown field": body(tensor("FP32", [1.0]), extra=1),
    "an id that is a number": body(tensor("FP32", [1.0]), id=7),
    "no inputs": body(),
    "not JSON": "{",
    "NaN (not JSON)": '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
}


@pytest.mark.parametrize("case", list(DECODED))
def test_flat_requests_decode_as_the_general_codec_decodes_them(case: str) -> None:
    flat = decode_flat_request(DECODED[case], LIMITS)
    general = decode_infer_request(DECODED[case], LIMITS)

    assert flat is not None
    assert (flat.model_name, flat.model_version) == (general.model_name, general.model_version)
    assert (flat.request.id, flat.request.outputs) == (general.request.id, general.request.outputs)
    assert flat.request.parameters == general.request.parameters
    for mine, theirs in zip(flat.request.inputs, general.request.inputs, strict=True):
        assert (mine.name, mine.datatype, mine.array.dtype) == (
            theirs.name,
            theirs.datatype,
            theirs.array.dtype,
        )
        np.testing.assert_array_equal(mine.array, theirs.array)


@pytest.mark.parametrize("case", list(DECLINED))
def test_anything_else_is_left_to_the_general_codec(case: str) -> None:
    assert decode_flat_request(DECLINED[case], LIMITS) is None


def test_a_shape_beyond_the_limits_is_refused_as_the_general_codec_refuses_it() -> None:
    request = body(tensor("FP32", [1.0], [65, 1]))
    with pytest.raises(PayloadTooLarge) as general:
        decode_infer_request(request, LIMITS)
    with pytest.raises(PayloadTooLarge) as flat:
        decode_flat_request(request, LIMITS)
    assert str(flat.value) == str(general.value)


def answer(*arrays: np.ndarray[Any, Any], **fields: Any) -> InferenceResponse:
    outputs = [
        Tensor(f"out{i}", datatype, array)
        for i, (datatype, array) in enumerate(
            (("FP32" if a.dtype.kind == "f" else "INT64" if a.dtype.kind in "iu" else "BOOL"), a)
            for a in arrays
        )
    ]
    return InferenceResponse(model_name="m", model_version=3, outputs=outputs, **fields)


def random_floats(dtype: type[np.floating[Any]], count: int = 2000) -> np.ndarray[Any, Any]:
    generator = np.random.default_rng(20)
    exponents = generator.uniform(-40, 38, count)
    values = generator.standard_normal(count) * 10.0**exponents
    with np.errstate(over="ignore"):
        return values.astype(dtype)


ENCODED = {
    "float32 across exponents": answer(random_floats(np.float32).reshape(40, 50)),
    "float64 across exponents": answer(random_floats(np.float64)),
    "float16": answer(random_floats(np.float16)),
    "NaN and infinities": answer(np.array([np.nan, np.inf, -np.inf, 0.1], dtype=np.float32)),
    "integers": answer(
        np.array([[-(2**63), 2**63 - 1]], dtype=np.int64), np.array([2**64 - 1], dtype=np.uint64)
    ),
    "booleans": answer(np.array([True, False])),
    "a scalar": answer(np.array(1.5, dtype=np.float32)),
    "not contiguous": answer(np.arange(12, dtype=np.float32).reshape(3, 4).T),
    "an id with escapes": answer(np.zeros(2, dtype=np.float32), id='q"\\\n\t\x01é☃'),
}


@pytest.mark.parametrize("case", list(ENCODED))
def test_json_answers_are_written_as_the_general_codec_writes_them(case: str) -> None:
    assert encode_json_response(ENCODED[case]) == encode_infer_response(ENCODED[case]).content


@pytest.mark.parametrize(
    "response",
    [
        InferenceResponse("m", 1, [Tensor("t", "BYTES", np.array(["a"], dtype=object))]),
        answer(np.zeros(1, dtype=np.float32), parameters={"explanation": {}}),
        answer(np.zeros(2, dtype=">f4")),
    ],
    ids=["BYTES", "parameters", "big-endian"],
)
def test_other_answers_are_left_to_the_general_codec(response: InferenceResponse) -> None:
    assert encode_json_response(response) is None
