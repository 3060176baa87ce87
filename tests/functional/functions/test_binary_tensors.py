"""Triton's binary tensor extension at the infer function's edge, with hand-built HTTP API v2 events.

A binary request is a JSON header of `inference-header-content-length` bytes followed by each binary
input's bytes; API Gateway hands it over base64-encoded. The answer must be the same numbers as JSON, laid
out the same way, and every malformed layout must be a 4xx that names the problem.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from maas.registry import Manifest, ModelRegistry
from tests.support import events as support_events
from tests.support.events import http_event, load_event
from tests.support.functions import start_function
from tests.support.models import text_normalizer_model

SEED_PATH = "/v2/models/seed-mlp/infer"
TEXT_PATH = "/v2/models/text-normalizer/infer"
HEADER_LENGTH = "inference-header-content-length"
OCTET_STREAM = "application/octet-stream"
SMALL_REQUEST_LIMIT = 256
# The rows of tests/events/http_v2_infer.json, so the JSON event and the binary one carry the same numbers.
ROWS = np.asarray(json.loads(load_event("http_v2_infer.json")["body"])["inputs"][0]["data"], dtype=np.float32)
TEXTS = ["Hello World", "ÄÖÜ Straße", "", "MAAS"]


@pytest.fixture
def infer_function(
    monkeypatch: pytest.MonkeyPatch, s3: Any, registry: ModelRegistry, published_seed: Manifest
) -> ModuleType:
    registry.publish("text-normalizer", *text_normalizer_model())
    return start_function(monkeypatch, "infer")


@pytest.fixture
def small_infer_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "infer", MAAS_MAX_REQUEST_BYTES=str(SMALL_REQUEST_LIMIT))


# ---- building requests and reading answers


def fp32_chunk(rows: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(rows, dtype="<f4").tobytes()


def bytes_chunk(items: Sequence[str | bytes]) -> bytes:
    """Triton's BYTES layout: a little-endian uint32 length, then the element's bytes."""
    parts = [item.encode() if isinstance(item, str) else item for item in items]
    return b"".join(struct.pack("<I", len(part)) + part for part in parts)


def seed_header(size: object = None, *, shape: Sequence[int] = (3, 10), **request: Any) -> dict[str, Any]:
    """A seed-mlp request header whose one input is binary of `size` bytes (default: what shape needs)."""
    needed = int(np.prod(shape)) * 4
    item = {
        "name": "input",
        "datatype": "FP32",
        "shape": list(shape),
        "parameters": {"binary_data_size": needed if size is None else size},
    }
    return {"inputs": [item], **request}


def text_header(size: int, *, count: int = len(TEXTS), **request: Any) -> dict[str, Any]:
    item = {"name": "text", "datatype": "BYTES", "shape": [count], "parameters": {"binary_data_size": size}}
    return {"inputs": [item], **request}


def infer_event(
    path: str,
    header: Mapping[str, Any] | bytes,
    *chunks: bytes,
    header_length: str | None = None,
    headers: Mapping[str, str] | None = None,
    encode: Callable[[bytes], bytes] = lambda body: body,
) -> dict[str, Any]:
    """The HTTP API v2 event API Gateway sends for a binary request: base64 body, isBase64Encoded true."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = encode(header_bytes + b"".join(chunks))
    binary_headers = {
        "content-type": OCTET_STREAM,
        "content-length": str(len(body)),
        HEADER_LENGTH: str(len(header_bytes)) if header_length is None else header_length,
        **(headers or {}),
    }
    return http_event("POST", path, body, headers=binary_headers)


def json_event(path: str, document: Mapping[str, Any]) -> dict[str, Any]:
    return support_events.json_event("POST", path, document)


@dataclass(frozen=True)
class Answer:
    """A function response split the way a Triton client splits it: JSON header, then binary outputs."""

    status: int
    headers: Mapping[str, str]
    base64_encoded: bool
    document: dict[str, Any]
    binary: bytes

    def output(self, name: str) -> dict[str, Any]:
        for output in self.document["outputs"]:
            if output["name"] == name:
                found: dict[str, Any] = output
                return found
        raise KeyError(name)

    def is_binary(self, name: str) -> bool:
        return "binary_data_size" in (self.output(name).get("parameters") or {})

    def chunk(self, name: str) -> bytes:
        """The raw bytes of one binary output, located by the sizes of the binary outputs before it."""
        offset = 0
        for output in self.document["outputs"]:
            size = (output.get("parameters") or {}).get("binary_data_size")
            if size is None:
                continue
            if output["name"] == name:
                return self.binary[offset : offset + size]
            offset += size
        raise KeyError(name)

    def fp32(self, name: str) -> npt.NDArray[np.float32]:
        output = self.output(name)
        if self.is_binary(name):
            return np.frombuffer(self.chunk(name), dtype="<f4").reshape(output["shape"])
        return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def invoke(function: ModuleType, event: dict[str, Any]) -> Answer:
    response = function.lambda_handler(event, None)
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    encoded = bool(response.get("isBase64Encoded"))
    raw = base64.b64decode(response["body"]) if encoded else response["body"].encode()
    length = headers.get(HEADER_LENGTH)
    split = len(raw) if length is None else int(length)
    return Answer(response["statusCode"], headers, encoded, json.loads(raw[:split]), raw[split:])


# ---- same numbers as JSON


@pytest.fixture
def json_answer(infer_function: ModuleType) -> npt.NDArray[np.float32]:
    answer = invoke(infer_function, load_event("http_v2_infer.json"))
    assert answer.status == 200, answer.document
    assert not answer.is_binary("output")
    return answer.fp32("output")


@pytest.mark.parametrize(
    ("request_fields", "binary_output"),
    [
        pytest.param({}, False, id="no-output-parameters-means-json"),
        pytest.param({"parameters": {"binary_data_output": True}}, True, id="binary_data_output"),
        pytest.param(
            {"outputs": [{"name": "output", "parameters": {"binary_data": True}}]}, True, id="output-binary"
        ),
        pytest.param(
            {
                "parameters": {"binary_data_output": True},
                "outputs": [{"name": "output", "parameters": {"binary_data": False}}],
            },
            False,
            id="output-json-overrides-binary_data_output",
        ),
        pytest.param({"outputs": [{"name": "output"}]}, False, id="requested-output-without-parameters"),
    ],
)
def test_given_a_binary_input_when_inferring_then_the_numbers_equal_the_json_answer(
    infer_function: ModuleType,
    json_answer: npt.NDArray[np.float32],
    request_fields: dict[str, Any],
    binary_output: bool,
) -> None:
    answer = invoke(infer_function, infer_event(SEED_PATH, seed_header(**request_fields), fp32_chunk(ROWS)))

    assert answer.status == 200, answer.document
    assert answer.is_binary("output") is binary_output
    np.testing.assert_array_equal(answer.fp32("output"), json_answer)


def test_given_binary_output_then_the_response_is_base64_with_its_header_length(
    infer_function: ModuleType, json_answer: npt.NDArray[np.float32]
) -> None:
    event = infer_event(
        SEED_PATH, seed_header(id="bin-1", parameters={"binary_data_output": True}), fp32_chunk(ROWS)
    )

    response = infer_function.lambda_handler(event, None)

    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    headers = {name.lower(): value for name, value in response["headers"].items()}
    assert headers["content-type"] == OCTET_STREAM
    assert headers["x-maas-model-version"] == "1"
    raw = base64.b64decode(response["body"], validate=True)
    header_length = int(headers[HEADER_LENGTH])
    document = json.loads(raw[:header_length])
    assert document["model_name"] == "seed-mlp"
    assert document["id"] == "bin-1"
    assert document["outputs"] == [
        {"name": "output", "datatype": "FP32", "shape": [3, 10], "parameters": {"binary_data_size": 120}}
    ]
    assert len(raw) == header_length + 120
    np.testing.assert_array_equal(np.frombuffer(raw[header_length:], dtype="<f4").reshape(3, 10), json_answer)


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress], ids=["gzip", "deflate"])
def test_given_a_compressed_binary_request_then_it_is_inflated_before_the_header_is_split(
    infer_function: ModuleType, json_answer: npt.NDArray[np.float32], compress: Callable[[bytes], bytes]
) -> None:
    encoding = "gzip" if compress is gzip.compress else "deflate"
    event = infer_event(
        SEED_PATH,
        seed_header(parameters={"binary_data_output": True}),
        fp32_chunk(ROWS),
        headers={"content-encoding": encoding},
        encode=compress,
    )

    answer = invoke(infer_function, event)

    assert answer.status == 200, answer.document
    np.testing.assert_array_equal(answer.fp32("output"), json_answer)


# ---- BYTES: the length-prefixed layout both ways


@pytest.mark.parametrize("binary_input", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_output", [True, False], ids=["binary-out", "json-out"])
def test_given_bytes_then_strings_are_length_prefixed_on_the_wire_both_ways(
    infer_function: ModuleType, binary_input: bool, binary_output: bool
) -> None:
    fields: dict[str, Any] = {"parameters": {"binary_data_output": binary_output}}
    if binary_input:
        chunk = bytes_chunk(TEXTS)
        event = infer_event(TEXT_PATH, text_header(len(chunk), **fields), chunk)
    else:
        item = {"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}
        event = json_event(TEXT_PATH, {"inputs": [item], **fields})

    answer = invoke(infer_function, event)

    assert answer.status == 200, answer.document
    lowered = [text.lower() for text in TEXTS]
    assert answer.output("lowered")["shape"] == [len(TEXTS)]
    if binary_output:
        assert answer.chunk("lowered") == bytes_chunk(lowered)
        assert answer.output("lowered")["parameters"] == {"binary_data_size": len(bytes_chunk(lowered))}
        assert answer.chunk("count") == struct.pack("<q", len(TEXTS))
    else:
        assert answer.output("lowered")["data"] == lowered
        assert answer.output("count")["data"] == [len(TEXTS)]
        assert answer.binary == b""


# ---- malformed binary requests: 400 naming the problem


def _rows(count: int) -> bytes:
    return fp32_chunk(ROWS[:count])


BAD_REQUESTS: list[Any] = [
    pytest.param(
        SEED_PATH,
        seed_header(),
        [_rows(3)],
        "99999",
        ["inference-header-content-length", "at most the body"],
        id="header-length-longer-than-body",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(),
        [_rows(3)],
        "twelve",
        ["inference-header-content-length", "non-negative"],
        id="header-length-not-a-number",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(),
        [_rows(3)],
        "-5",
        ["inference-header-content-length", "non-negative"],
        id="header-length-negative",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(),
        [_rows(3)],
        "\u00b2",
        ["inference-header-content-length", "non-negative"],
        id="header-length-a-superscript-digit",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(),
        [_rows(3)],
        "9" * 5000,
        ["inference-header-content-length"],
        id="header-length-of-5000-digits",
    ),
    pytest.param(
        SEED_PATH,
        b"not json at all",
        [_rows(3)],
        None,
        ["json"],
        id="header-not-json",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(120),
        [_rows(3)[:-4]],
        None,
        ["binary_data_size", "at most the 116", "got 120"],
        id="binary-data-size-beyond-the-body",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(120),
        [_rows(3), b"\0" * 4],
        None,
        ["4 bytes left"],
        id="leftover-bytes-after-the-last-input",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(116),
        [_rows(3)[:-4]],
        None,
        ["binary_data_size", "needs 120 bytes", "got 116"],
        id="size-mismatch-with-shape-times-itemsize",
    ),
    pytest.param(
        SEED_PATH,
        {"inputs": [{**seed_header()["inputs"][0], "data": ROWS.tolist()}]},
        [_rows(3)],
        None,
        ["either data or parameters.binary_data_size", "both"],
        id="data-and-binary-data-size",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(-120),
        [_rows(3)],
        None,
        ["binary_data_size", "non-negative integer"],
        id="binary-data-size-negative",
    ),
    pytest.param(
        SEED_PATH,
        seed_header("120"),
        [_rows(3)],
        None,
        ["binary_data_size", "non-negative integer"],
        id="binary-data-size-a-string",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(True),
        [_rows(3)],
        None,
        ["binary_data_size", "non-negative integer"],
        id="binary-data-size-a-boolean",
    ),
    pytest.param(
        TEXT_PATH,
        text_header(8, count=2),
        [bytes_chunk(["ab"]) + b"\1\0"],
        None,
        ["inputs[0] ('text')", "BYTES element 1", "truncated 4-byte length prefix"],
        id="truncated-bytes-length-prefix",
    ),
    pytest.param(
        TEXT_PATH,
        text_header(6, count=1),
        [struct.pack("<I", 10) + b"ab"],
        None,
        ["BYTES element 0", "declares 10 bytes, only 2 remain"],
        id="bytes-length-beyond-the-chunk",
    ),
    pytest.param(
        TEXT_PATH,
        text_header(6, count=1),
        [bytes_chunk([b"\xff\xfe"])],
        None,
        ["BYTES element 0", "not valid UTF-8"],
        id="non-utf8-bytes-element",
    ),
    pytest.param(
        TEXT_PATH,
        text_header(len(bytes_chunk(["a", "b"])), count=3),
        [bytes_chunk(["a", "b"])],
        None,
        ["needs 3 BYTES elements, got 2"],
        id="fewer-bytes-elements-than-the-shape",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(outputs=[{"name": "output", "parameters": {"binary_data": "yes"}}]),
        [_rows(3)],
        None,
        ["outputs[0].parameters.binary_data", "expected true or false"],
        id="non-boolean-binary-data",
    ),
    pytest.param(
        SEED_PATH,
        seed_header(parameters={"binary_data_output": 1}),
        [_rows(3)],
        None,
        ["parameters.binary_data_output", "expected true or false"],
        id="non-boolean-binary-data-output",
    ),
]


@pytest.mark.parametrize(("path", "header", "chunks", "header_length", "expected"), BAD_REQUESTS)
def test_given_a_malformed_binary_request_then_400_names_the_problem(
    infer_function: ModuleType,
    path: str,
    header: dict[str, Any] | bytes,
    chunks: list[bytes],
    header_length: str | None,
    expected: list[str],
) -> None:
    answer = invoke(infer_function, infer_event(path, header, *chunks, header_length=header_length))

    assert answer.status == 400, answer.document
    assert set(answer.document) == {"error"}
    message = answer.document["error"]
    for fragment in expected:
        assert fragment.lower() in message.lower(), message


# ---- the body itself: size, encoding, base64


def test_given_a_small_request_limit_then_a_request_within_it_is_served(
    small_infer_function: ModuleType,
) -> None:
    event = infer_event(SEED_PATH, seed_header(shape=(1, 10)), _rows(1))

    answer = invoke(small_infer_function, event)

    assert answer.status == 200, answer.document


@pytest.mark.parametrize(
    ("event_factory", "expected"),
    [
        pytest.param(
            lambda: infer_event(SEED_PATH, seed_header(shape=(6, 10)), _rows(3) + _rows(3)),
            ["body", f"at most {SMALL_REQUEST_LIMIT} bytes", "MAAS_MAX_REQUEST_BYTES"],
            id="base64-binary-body",
        ),
        pytest.param(
            lambda: load_event("http_v2_infer.json"),
            ["body", f"at most {SMALL_REQUEST_LIMIT} bytes", "MAAS_MAX_REQUEST_BYTES"],
            id="plain-json-body",
        ),
        pytest.param(
            lambda: infer_event(
                SEED_PATH,
                seed_header(shape=(1, 10)),
                _rows(1) + b"\0" * 5_000,
                headers={"content-encoding": "gzip"},
                encode=gzip.compress,
            ),
            ["inflated body", f"at most {SMALL_REQUEST_LIMIT} bytes"],
            id="gzip-that-inflates-beyond-the-limit",
        ),
    ],
)
def test_given_a_body_over_max_request_bytes_then_413(
    small_infer_function: ModuleType, event_factory: Callable[[], dict[str, Any]], expected: list[str]
) -> None:
    answer = invoke(small_infer_function, event_factory())

    assert answer.status == 413, answer.document
    assert set(answer.document) == {"error"}
    for fragment in expected:
        assert fragment in answer.document["error"], answer.document["error"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"content-encoding": "br"}, ["Content-Encoding", "'br'"], id="brotli"),
        pytest.param({"content-type": "image/png"}, ["Content-Type", "'image/png'"], id="image"),
    ],
)
def test_given_an_encoding_or_media_type_we_do_not_decode_then_415(
    infer_function: ModuleType, headers: dict[str, str], expected: list[str]
) -> None:
    answer = invoke(infer_function, infer_event(SEED_PATH, seed_header(), _rows(3), headers=headers))

    assert answer.status == 415, answer.document
    for fragment in expected:
        assert fragment in answer.document["error"], answer.document["error"]


def test_given_a_gzip_header_over_data_that_is_not_gzip_then_400(infer_function: ModuleType) -> None:
    event = infer_event(SEED_PATH, seed_header(), _rows(3), headers={"content-encoding": "gzip"})

    answer = invoke(infer_function, event)

    assert answer.status == 400, answer.document
    assert "does not inflate" in answer.document["error"]


def test_given_is_base64_encoded_over_invalid_base64_then_400(infer_function: ModuleType) -> None:
    event = infer_event(SEED_PATH, seed_header(), _rows(3))
    event["body"] = "this is *not* base64!"

    answer = invoke(infer_function, event)

    assert answer.status == 400, answer.document
    assert "invalid base64" in answer.document["error"]
    assert "isBase64Encoded" in answer.document["error"]
