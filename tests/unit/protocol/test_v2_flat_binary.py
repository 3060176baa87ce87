"""The binary codec gives what the general V2 codec gives for Triton binary requests and answers, refuses
with its very errors, or declines and leaves the request to it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from maas.errors import MaasError
from maas.infer_types import InferenceResponse, Tensor
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import DecodedInferRequest, decode_infer_request, encode_infer_response
from maas.protocol.v2_flat_binary import decode_binary_request, encode_binary_response

LIMITS = TensorLimits(max_batch=64, max_elements=4096)
SHALLOW = TensorLimits(max_batch=64, max_elements=4096, max_json_depth=3)


def binary_input(
    array: np.ndarray[Any, Any], datatype: str, name: str = "x", **parameters: Any
) -> tuple[dict[str, Any], bytes]:
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    item = {
        "name": name,
        "datatype": datatype,
        "shape": list(array.shape),
        "parameters": {"binary_data_size": len(raw), **parameters},
    }
    return item, raw


def request(*inputs: tuple[dict[str, Any], bytes], tail: bytes = b"", **fields: Any) -> tuple[bytes, int]:
    """A binary request body and its Inference-Header-Content-Length."""
    header = json.dumps({"inputs": [item for item, _ in inputs], **fields}).encode()
    return header + b"".join(raw for _, raw in inputs) + tail, len(header)


FLOATS = np.array([[0.5, -1.25, 3.0e-7], [1.0e30, 0.1, -0.0]], dtype=np.float32)
DECODED = {
    "FP32": request(binary_input(FLOATS, "FP32")),
    "FP64": request(binary_input(FLOATS.astype(np.float64), "FP64")),
    "FP16": request(binary_input(np.array([0.5, 65504.0], dtype=np.float16), "FP16")),
    "INT8": request(binary_input(np.array([-128, 127], dtype=np.int8), "INT8")),
    "UINT64": request(binary_input(np.array([0, 2**64 - 1], dtype=np.uint64), "UINT64")),
    "BOOL": request(binary_input(np.array([True, False]), "BOOL")),
    "unaligned after an odd header": request(
        binary_input(np.array([1], dtype=np.int8), "INT8", name="a"),
        binary_input(FLOATS, "FP32", name="b"),
    ),
    "id, outputs, parameters, names": request(
        binary_input(FLOATS, "FP32"),
        id="r-1",
        outputs=[{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
        parameters={"binary_data_output": False, "routing_key": "k"},
        model_name="m",
        model_version="2",
    ),
    "binary by default, one output not": request(
        binary_input(FLOATS, "FP32"),
        outputs=[{"name": "y", "parameters": {"binary_data": False}}],
        parameters={"binary_data_output": True},
    ),
    "no elements": request(binary_input(np.zeros((0, 3), dtype=np.float32), "FP32")),
}

DECLINED = {
    "a JSON input": request(({"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}, b"")),
    "BYTES": request(
        (
            {"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 5}},
            b"\x01\x00\x00\x00a",
        )
    ),
    "an unknown datatype": request(
        ({**binary_input(FLOATS, "FP32")[0], "datatype": "FP128"}, FLOATS.tobytes())
    ),
    "a size that is not an integer": request(
        ({**binary_input(FLOATS, "FP32")[0], "parameters": {"binary_data_size": True}}, b"")
    ),
    "header longer than the body": (b'{"inputs": []}', 99),
    "header not JSON": (b"{" + FLOATS.tobytes(), 1),
    "bytes left over": request(binary_input(FLOATS, "FP32"), tail=b"\x00"),
    "size beyond the body": request(
        ({**binary_input(FLOATS, "FP32")[0], "parameters": {"binary_data_size": 999}}, FLOATS.tobytes())
    ),
    "a binary flag that is not a boolean": request(
        binary_input(FLOATS, "FP32"), parameters={"binary_data_output": 1}
    ),
    "nested parameters": request(binary_input(FLOATS, "FP32"), parameters={"a": {"b": 1}}),
    "an unknown field": request(binary_input(FLOATS, "FP32"), extra=1),
    "an unknown output field": request(
        binary_input(FLOATS, "FP32"), outputs=[{"name": "y", "datatype": "FP32"}]
    ),
    "no inputs": request(),
    "input parameters besides the size": request(binary_input(FLOATS, "FP32", content_type="np")),
}


@pytest.mark.parametrize("case", list(DECODED))
def test_binary_requests_decode_as_the_general_codec_decodes_them(case: str) -> None:
    body, length = DECODED[case]
    fast = decode_binary_request(body, length, LIMITS)
    general = decode_infer_request(body, LIMITS, header_length=length)

    assert fast is not None
    assert (fast.model_name, fast.model_version) == (general.model_name, general.model_version)
    assert (fast.binary_by_output, fast.binary_by_default) == (
        general.binary_by_output,
        general.binary_by_default,
    )
    assert (fast.request.id, fast.request.outputs) == (general.request.id, general.request.outputs)
    assert fast.request.parameters == general.request.parameters
    for mine, theirs in zip(fast.request.inputs, general.request.inputs, strict=True):
        assert (mine.name, mine.datatype, mine.array.dtype, mine.array.shape) == (
            theirs.name,
            theirs.datatype,
            theirs.array.dtype,
            theirs.array.shape,
        )
        np.testing.assert_array_equal(mine.array, theirs.array)


def test_aligned_tensor_bytes_are_viewed_not_copied() -> None:
    header = json.dumps({"inputs": [binary_input(FLOATS, "FP32")[0]]}).encode()
    header += b" " * (-len(header) % 8)  # the tensor starts on an aligned offset
    body = header + FLOATS.tobytes()

    decoded = decode_binary_request(body, len(header), LIMITS)

    assert decoded is not None
    assert np.shares_memory(decoded.request.inputs[0].array, np.frombuffer(body, dtype=np.uint8))


@pytest.mark.parametrize("case", list(DECLINED))
def test_anything_else_is_left_to_the_general_codec(case: str) -> None:
    body, length = DECLINED[case]
    assert decode_binary_request(body, length, LIMITS) is None


REFUSED = {
    "a batch beyond the limit": (request(binary_input(np.zeros((65, 1), dtype=np.float32), "FP32")), LIMITS),
    "a negative dimension": (
        request(({**binary_input(FLOATS, "FP32")[0], "shape": [-1, 3]}, FLOATS.tobytes())),
        LIMITS,
    ),
    "bytes that do not fit the shape": (
        request(({**binary_input(FLOATS, "FP32")[0], "shape": [2, 2]}, FLOATS.tobytes())),
        LIMITS,
    ),
    "the second input's shape": (
        request(
            binary_input(FLOATS, "FP32", name="a"),
            ({**binary_input(FLOATS, "FP32", name="b")[0], "shape": [99, 3]}, FLOATS.tobytes()),
        ),
        LIMITS,
    ),
    "input parameters past the depth limit": (request(binary_input(FLOATS, "FP32")), SHALLOW),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_plain_request_is_refused_as_the_general_codec_refuses_it(case: str) -> None:
    (body, length), limits = REFUSED[case]
    with pytest.raises(MaasError) as general:
        decode_infer_request(body, limits, header_length=length)
    with pytest.raises(MaasError) as fast:
        decode_binary_request(body, length, limits)

    assert (type(fast.value), str(fast.value)) == (type(general.value), str(general.value))


def answer(*arrays: tuple[str, np.ndarray[Any, Any]], **fields: Any) -> InferenceResponse:
    outputs = [Tensor(f"out{index}", datatype, array) for index, (datatype, array) in enumerate(arrays)]
    return InferenceResponse(model_name="m", model_version=3, outputs=outputs, **fields)


def wanting(binary_by_default: bool, **binary_by_output: bool) -> DecodedInferRequest:
    decoded = decode_infer_request(
        json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}), LIMITS
    )
    return DecodedInferRequest(decoded.request, binary_by_output, binary_by_default)


GENERATOR = np.random.default_rng(20)
ENCODED = {
    "every output binary": (
        answer(("FP32", GENERATOR.standard_normal((4, 5)).astype(np.float32)), ("INT64", np.arange(3))),
        wanting(True),
    ),
    "one binary, one JSON": (
        answer(
            ("FP32", GENERATOR.standard_normal(7).astype(np.float32)), ("FP64", GENERATOR.standard_normal(2))
        ),
        wanting(False, out0=True),
    ),
    "binary asked for an output not answered": (
        answer(("FP32", np.ones(2, dtype=np.float32))),
        wanting(False, other=True),
    ),
    "booleans, FP16, not contiguous": (
        answer(("BOOL", np.array([True, False])), ("FP16", np.arange(12, dtype=np.float16).reshape(3, 4).T)),
        wanting(True),
    ),
    "big-endian in binary": (answer(("FP32", np.arange(3, dtype=">f4"))), wanting(True)),
    "an id with escapes": (
        answer(("FP32", np.zeros(2, dtype=np.float32)), id='q"\\\n\t\x01é☃'),
        wanting(True),
    ),
}


@pytest.mark.parametrize("case", list(ENCODED))
def test_binary_answers_are_written_as_the_general_codec_writes_them(case: str) -> None:
    response, decoded = ENCODED[case]
    fast = encode_binary_response(response, decoded)
    general = encode_infer_response(response, decoded)

    assert fast is not None
    assert (fast.content, fast.header_length) == (general.content, general.header_length)


@pytest.mark.parametrize(
    "response",
    [
        InferenceResponse("m", 1, [Tensor("t", "BYTES", np.array(["a"], dtype=object))]),
        answer(("FP32", np.zeros(1, dtype=np.float32)), parameters={"explanation": {}}),
    ],
    ids=["BYTES", "parameters"],
)
def test_other_answers_are_left_to_the_general_codec(response: InferenceResponse) -> None:
    assert encode_binary_response(response, wanting(True)) is None
