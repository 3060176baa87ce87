from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import numpy as np
import pytest

from maas.config import Settings
from maas.datatypes import BY_V2, DATATYPES
from maas.errors import InvalidInput, PayloadTooLarge
from maas.infer_types import InferenceResponse, Tensor
from maas.protocol.json_depth import check_depth, check_leading_depth
from maas.protocol.tensor_codec import (
    TensorLimits,
    array_from_binary,
    array_from_json,
    array_to_binary,
    check_shape,
    nested_shape,
)
from maas.protocol.v2_codec import decode_infer_request, encode_infer_response

LIMITS = TensorLimits(max_batch=8, max_elements=64)
SAMPLES: dict[str, Any] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "BYTES": np.array([["a", "", "ünï"], ["x" * 300, "b", "c"]], dtype=object),
    "FP16": np.array([[0.5, -1.25, 65504.0], [0.0, -0.0, 1e-3]], dtype=np.float16),
    "UINT64": np.array([[0, 1, 2**64 - 1], [2**63, 5, 6]], dtype=np.uint64),
    "INT64": np.array([[-(2**63), -1, 0], [1, 2**63 - 1, 7]], dtype=np.int64),
}


def sample(datatype: str) -> np.ndarray:
    if datatype in SAMPLES:
        return np.asarray(SAMPLES[datatype])
    return np.arange(6, dtype=BY_V2[datatype].numpy).reshape(2, 3)


@pytest.mark.parametrize("datatype", [d.v2 for d in DATATYPES])
def test_binary_round_trip_for_every_datatype(datatype: str) -> None:
    array = sample(datatype)
    encoded = array_to_binary(array, BY_V2[datatype])
    decoded = array_from_binary(memoryview(encoded), BY_V2[datatype], list(array.shape), "x")
    assert decoded.shape == array.shape
    assert decoded.tolist() == array.tolist()


def test_binary_tensors_share_the_request_buffer_instead_of_copying_it() -> None:
    values = np.arange(8, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}
            ]
        }
    ).encode()
    padding = (-len(header)) % 4
    header += b" " * padding  # keep the tensor aligned, as tritonclient's JSON usually is not
    body = header + values.tobytes()
    request = decode_infer_request(body, LIMITS, header_length=len(header)).request
    array = request.inputs[0].array
    assert np.shares_memory(array, np.frombuffer(body, dtype=np.uint8))
    assert array.tolist() == values.reshape(2, 4).tolist()


def test_a_binary_response_puts_the_json_header_first_then_the_tensor_bytes() -> None:
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
        }
    )
    decoded = decode_infer_request(header, LIMITS)
    y = Tensor("y", "FP32", np.array([1.5, 2.5], dtype=np.float32))
    z = Tensor("z", "INT64", np.array([3], dtype=np.int64))
    encoded = encode_infer_response(InferenceResponse("m", 2, [y, z]), decoded)
    assert encoded.header_length is not None
    meta = json.loads(encoded.content[: encoded.header_length])
    assert meta["outputs"][0] == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2],
        "parameters": {"binary_data_size": 8},
    }
    assert meta["outputs"][1]["data"] == [3]
    assert np.frombuffer(encoded.content[encoded.header_length :], dtype="<f4").tolist() == [1.5, 2.5]


@pytest.mark.parametrize(
    ("request_parameters", "output_parameters", "binary"),
    [
        ({"binary_data_output": True}, None, True),
        ({"binary_data_output": True}, {"binary_data": False}, False),
        ({}, {"binary_data": True}, True),
        ({}, None, False),
    ],
)
def test_an_outputs_own_binary_flag_wins_over_the_request_default(
    request_parameters: dict[str, Any], output_parameters: dict[str, Any] | None, binary: bool
) -> None:
    payload: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}],
        "parameters": request_parameters,
    }
    if output_parameters is not None:
        payload["outputs"] = [{"name": "y", "parameters": output_parameters}]
    assert decode_infer_request(json.dumps(payload), LIMITS).wants_binary("y") is binary


@pytest.mark.parametrize(
    ("shape", "error", "fragment"),
    [
        ([9, 1], PayloadTooLarge, "batch of at most 8 (MAAS_MAX_BATCH), got 9"),
        ([1, 65], PayloadTooLarge, "at most 64 elements (MAAS_MAX_ELEMENTS)"),
        ([0, 2**70], PayloadTooLarge, "at most 64 elements"),
        ([1] * 33, InvalidInput, "at most 32 dimensions, got 33"),
        ([2, -1], InvalidInput, "non-negative dimensions"),
    ],
)
def test_shapes_are_bounded_before_anything_is_multiplied(
    shape: list[int], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_shape(shape, "x", LIMITS)


def test_settings_derive_the_cache_budget_from_lambda_memory() -> None:
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1000"}).cache_bytes == int(
        1000 * 2**20 * 0.4
    )
    assert (
        Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1000", "MAAS_CACHE_BYTES": "5"}).cache_bytes
        == 5
    )
    assert Settings.from_env({}).cache_bytes == 1 << 30


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress])
def test_compressed_bodies_inflate_within_the_limit(compress: Any) -> None:
    from maas.api.http_body import _inflate

    assert (
        _inflate(compress(b"x" * 100), "gzip" if compress is gzip.compress else "deflate", 100) == b"x" * 100
    )
    with pytest.raises(PayloadTooLarge):
        _inflate(compress(b"x" * 101), "gzip" if compress is gzip.compress else "deflate", 100)


def test_a_compressed_header_on_a_text_body_is_a_400_not_a_crash() -> None:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    from maas.api.http_body import read_body

    event = APIGatewayProxyEventV2(
        {
            "version": "2.0",
            "headers": {"content-encoding": "gzip", "content-type": "application/json"},
            "body": '{"reason": "café ☃"}',
            "isBase64Encoded": False,
            "requestContext": {"http": {"method": "POST", "path": "/"}},
        }
    )
    with pytest.raises(InvalidInput, match="expected gzip-compressed data"):
        read_body(event, 1000)


def test_a_multi_object_delete_that_fails_per_key_is_not_silent(s3: Any) -> None:
    from botocore.stub import Stubber

    from maas.errors import Unavailable
    from maas.registry import ModelRegistry
    from tests.support.aws import TEST_BUCKET

    registry = ModelRegistry(s3, TEST_BUCKET)
    with Stubber(s3) as stub:
        stub.add_response(
            "delete_objects", {"Errors": [{"Key": "k", "Code": "AccessDenied", "Message": "no"}]}
        )
        with pytest.raises(Unavailable, match="1 objects failed \\(AccessDenied\\)"):
            registry.delete_keys(["k"])


# ---- text elements (MAAS_MAX_STRING_BYTES)

BYTES = BY_V2["BYTES"]


@pytest.mark.parametrize(
    ("texts", "index", "size"),
    [
        (["ok", "x" * 11], 1, 11),
        # Three characters, twelve bytes: the limit is on UTF-8 bytes, not characters.
        (["\N{GRINNING FACE}" * 3], 0, 12),
        (["ab", "", "é" * 6], 2, 12),
    ],
)
def test_a_text_element_over_the_limit_is_413_naming_its_index_in_json_and_binary(
    texts: list[str], index: int, size: int
) -> None:
    expected = f"x: BYTES element {index} holds {size} bytes, expected at most 10 (MAAS_MAX_STRING_BYTES)"
    with pytest.raises(PayloadTooLarge) as caught:
        array_from_json(texts, BYTES, [len(texts)], "x", max_string_bytes=10)
    assert caught.value.message == expected

    encoded = array_to_binary(np.array(texts, dtype=object), BYTES)
    with pytest.raises(PayloadTooLarge) as caught:
        array_from_binary(memoryview(encoded), BYTES, [len(texts)], "x", max_string_bytes=10)
    assert caught.value.message == expected


def test_text_elements_at_the_limit_decode_in_both_forms() -> None:
    texts = ["x" * 10, "é" * 5, "\N{GRINNING FACE}" * 2, ""]

    decoded = array_from_json(texts, BYTES, [2, 2], "x", max_string_bytes=10)
    binary = array_from_binary(
        memoryview(array_to_binary(np.array(texts, dtype=object), BYTES)),
        BYTES,
        [2, 2],
        "x",
        max_string_bytes=10,
    )

    assert decoded.tolist() == binary.tolist() == [texts[:2], texts[2:]]
    assert decoded.dtype == object


def test_one_long_text_among_many_short_ones_stays_python_strings() -> None:
    # A fixed-width numpy string array would give all 100 000 elements the longest one's width (4 GB here).
    texts = ["y" * 10_000] + [""] * 100_000

    decoded = array_from_json(texts, BYTES, [len(texts)], "x", max_string_bytes=10_000)

    assert decoded.dtype == object and decoded.nbytes == len(texts) * decoded.itemsize
    assert decoded[0] == texts[0]


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (["a", 1], "got integers"),
        (["a", 1.5], "got numbers with a fraction"),
        (["a", True], "got booleans"),
        (["a", None], "got null"),
        (["a", {"k": "v"}], "got objects"),
        ([["a", "b"], ["c"]], "got a ragged nested list"),
        # Python's json (the event path) admits a lone surrogate, which no model can take.
        (["ünï", json.loads('"\\ud800"')], "got a lone surrogate in BYTES element 1"),
    ],
)
def test_text_tensors_take_strings_only(data: list[Any], got: str) -> None:
    # numpy would quietly turn a number into its text, and pass null through to the model.
    with pytest.raises(InvalidInput) as caught:
        array_from_json(data, BYTES, [2], "x")
    assert got in caught.value.message


def test_nested_shape_follows_first_elements() -> None:
    assert nested_shape([[1, 2, 3], [4, 5, 6]]) == [2, 3]
    assert nested_shape([]) == [0]
    assert nested_shape([[], []]) == [2, 0]
    assert nested_shape(["ab", "c"]) == [2]


# ---- JSON depth (MAAS_MAX_JSON_DEPTH)


@pytest.mark.parametrize(
    ("value", "above", "limit", "deeper"),
    [
        ({"a": 1}, 0, 1, False),
        ({"a": {"b": 1}}, 0, 1, True),
        ({"a": [1, [2, [3]]]}, 0, 4, False),
        ({"a": [1, [2, [3]]]}, 1, 4, True),
        # The deepest path is not the first one.
        ({"a": 1, "b": {"c": {"d": {}}}}, 0, 3, True),
        ([[], [[[[]]]]], 0, 4, True),
        ("text", 10, 10, False),
        ({}, 9, 10, False),
        ({}, 10, 10, True),
    ],
)
def test_check_depth_walks_every_path(value: Any, above: int, limit: int, deeper: bool) -> None:
    if deeper:
        with pytest.raises(InvalidInput, match=r"^f: expected JSON nested at most \d+ levels deep"):
            check_depth(value, "f", limit, above=above)
    else:
        check_depth(value, "f", limit, above=above)


def test_check_leading_depth_follows_first_elements_only() -> None:
    check_leading_depth([[1.0, 2.0], [3.0, 4.0]], "data", 5, above=3)
    with pytest.raises(InvalidInput, match=r"^data: expected JSON nested at most 4 levels deep"):
        check_leading_depth([[1.0, 2.0], [3.0, 4.0]], "data", 4, above=3)
    # A ragged tail is the tensor codec's to refuse, not this walk's.
    check_leading_depth([1.0, [[[[2.0]]]]], "data", 4, above=3)
    check_leading_depth([{"a": [1]}], "data", 3, above=0)
    with pytest.raises(InvalidInput):
        check_leading_depth([{"a": [1]}], "data", 2, above=0)


def test_a_pathologically_deep_document_is_a_400_naming_the_depth_setting() -> None:
    for raw in ("[" * 100_000, '{"a":' * 100_000, '{"inputs": [{"data": ' + "[" * 100_000):
        with pytest.raises(InvalidInput) as caught:
            decode_infer_request(raw, LIMITS)
        assert caught.value.message.startswith(
            "request body: expected JSON nested at most 32 levels deep (MAAS_MAX_JSON_DEPTH), got deeper"
        )


# ---- compressed bodies (MAAS_COMPRESSED_BODIES)


def _event(body: str | bytes, encoding: str) -> Any:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    return APIGatewayProxyEventV2(
        {
            "version": "2.0",
            "headers": {"content-encoding": encoding, "content-type": "application/json"},
            "body": body if isinstance(body, str) else base64.b64encode(body).decode(),
            "isBase64Encoded": not isinstance(body, str),
            "requestContext": {"http": {"method": "POST", "path": "/"}},
        }
    )


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_with_compressed_bodies_off_any_content_encoding_but_identity_is_415(encoding: str) -> None:
    from maas.api.http_body import read_body
    from maas.errors import UnsupportedMediaType

    with pytest.raises(UnsupportedMediaType) as caught:
        read_body(_event(gzip.compress(b"{}"), encoding), 1000, compressed=False)

    assert caught.value.message == (
        "Content-Encoding: expected identity, as compressed bodies are off (MAAS_COMPRESSED_BODIES), "
        f"got '{encoding}'"
    )
    assert read_body(_event("{}", "identity"), 1000, compressed=False) == "{}"


def test_settings_carry_every_limit_into_the_codec() -> None:
    settings = Settings.from_env(
        {"MAAS_MAX_STRING_BYTES": "7", "MAAS_MAX_JSON_DEPTH": "9", "MAAS_MAX_BATCH": "3"}
    )

    assert TensorLimits.from_settings(settings) == TensorLimits(
        max_batch=3, max_elements=settings.max_elements, max_string_bytes=7, max_json_depth=9
    )
