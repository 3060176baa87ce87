"""Client mistakes on every path: an HTTP event, a direct invoke and an async (SQS) request each answer a
4xx (or an error result) naming the field, never a 500 or an exception that would make a caller retry.

Two classes of mistake, table-driven: zero-size batches and dimensions, and integer extremes in every field
that takes a number (shapes, explain parameters, binary sizes, request parameters). Beside them, the JSON
literals a float may carry: FP inputs take NaN, Infinity, -Infinity and numerals beyond float64 (as ±inf),
integer and BOOL inputs refuse them.

Models, real and tiny, published to moto: seed-mlp (FP32 `input` [-1, 10]), token-stats (a text model:
BYTES `text` [-1]) and dtype-echo (one [-1, 3] input per V2 datatype, echoed).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from maas.datatypes import DATATYPES
from maas.registry import Manifest, ModelRegistry
from tests.support.aws import TEST_BUCKET
from tests.support.events import http_event, load_event
from tests.support.functions import load_function_module, set_function_env
from tests.support.models import dtype_echo_model, echo_input_name, pair_sum_model, token_stats_model
from tests.support.tables import cases

SEED, TEXT, ECHO, PAIR = "seed-mlp", "token-stats", "dtype-echo", "pair-sum"
BIG = 2**63
# Written into a JSON body in place of this float, as numerals no float64 holds.
OUT_OF_RANGE = 7.0e77
OUT_OF_RANGE_TEXT = {"1e400": "1e400", "-1e400": "-1e400"}
# Planted in payloads; no answer may quote them.
MARKER_TEXT = "s3cr3t-payload-7f3a9c"


# ---- requests


def seed_input(
    shape: list[int] | None = None, data: list[Any] | None = None, **fields: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": "input",
        "datatype": "FP32",
        "shape": [1, 10] if shape is None else shape,
        "data": [0.5] * 10 if data is None else data,
    }
    item.update(fields)
    return {key: value for key, value in item.items() if value is not None}


def text_input(items: list[str], shape: list[int] | None = None) -> dict[str, Any]:
    return {
        "name": "text",
        "datatype": "BYTES",
        "shape": [len(items)] if shape is None else shape,
        "data": items,
    }


def echo_inputs(datatype: str | None = None, data: list[Any] | None = None) -> list[dict[str, Any]]:
    """Every dtype-echo input, one row of valid values each; `datatype`'s row holds `data` instead."""
    inputs = []
    for each in DATATYPES:
        values: list[Any] = ["a", "b", "c"] if each.v2 == "BYTES" else [True, False, True]
        if each.v2 not in ("BYTES", "BOOL"):
            values = [1, 2, 3]
        if each.v2 == datatype:
            values = data if data is not None else values
        inputs.append(
            {"name": echo_input_name(each.v2), "datatype": each.v2, "shape": [1, 3], "data": values}
        )
    return inputs


class Case(NamedTuple):
    id: str
    model: str
    document: dict[str, Any]
    # 200: served; otherwise the 4xx every path answers, and a fragment of its message.
    status: int
    fragment: str = ""
    operation: str = "infer"
    # Where an SQS body's parser (orjson, which reads integers past 64 bits as floats) makes another, still
    # client-side, answer of the same mistake: its status and fragment.
    async_answer: tuple[int, str] | None = None


def pair_inputs(rows_a: int, rows_b: int) -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": "FP32", "shape": [rows, 2], "data": [0.5] * (rows * 2)}
        for name, rows in (("a", rows_a), ("b", rows_b))
    ]


def explain(parameters: dict[str, Any]) -> dict[str, Any]:
    """A seed-mlp explain request for output index 0 with `parameters`."""
    return {"inputs": [seed_input()], "parameters": {"target": 0, **parameters}}


# (name, parameters, status, message fragment) of explain requests to seed-mlp.
EXPLAIN_ROWS: list[tuple[str, dict[str, Any], int, str]] = [
    ("feature-mask-int64-max", {"feature_mask": [BIG - 1] * 5 + [0] * 5}, 200, ""),
    ("feature-mask-2^63", {"feature_mask": [BIG] * 10}, 400, "parameters.feature_mask"),
    ("feature-mask-2^64", {"feature_mask": [2**64] * 10}, 400, "parameters.feature_mask"),
    ("feature-mask-minus-2^63", {"feature_mask": [-BIG] * 10}, 400, "parameters.feature_mask"),
    # numpy reads 2**63 beside -1 as floats: still an id out of range, not "fractional numbers"
    ("feature-mask-2^63-beside-minus-1", {"feature_mask": [BIG, -1] + [0] * 8}, 400, "got one outside"),
    ("feature-mask-2^64-beside-0", {"feature_mask": [2**64, 0] + [0] * 8}, 400, "got one outside"),
    ("feature-mask-mixed-extremes", {"feature_mask": [BIG - 1, 0] * 5}, 200, ""),
    ("feature-mask-huge", {"feature_mask": [10**4000] * 10}, 400, "parameters.feature_mask"),
    ("feature-mask-empty", {"feature_mask": []}, 400, "parameters.feature_mask"),
    ("target-2^63", {"target": BIG}, 400, "parameters.target"),
    ("target-minus-1", {"target": -1}, 400, "parameters.target"),
    ("target-huge", {"target": 10**4000}, 400, "parameters.target"),
    ("target-list-huge", {"target": [10**4000]}, 400, "parameters.target"),
    ("n-samples-0", {"method": "shapley", "n_samples": 0}, 400, "parameters.n_samples"),
    ("n-samples-2^63", {"method": "shapley", "n_samples": BIG}, 400, "parameters.n_samples"),
    ("seed-2^63", {"method": "shapley", "seed": BIG, "n_samples": 2}, 200, ""),
    ("seed-huge", {"method": "shapley", "seed": 10**4000}, 400, "parameters.seed"),
    ("seed-negative", {"method": "shapley", "seed": -1}, 400, "parameters.seed"),
    ("window-0", {"method": "occlusion", "window": 0}, 400, "parameters.window"),
    ("window-2^63", {"method": "occlusion", "window": BIG}, 400, "parameters.window"),
    ("window-minus-2^63", {"method": "occlusion", "window": -BIG}, 400, "parameters.window"),
    ("window-list-empty", {"method": "occlusion", "window": []}, 400, "parameters.window"),
    ("window-list-2^64", {"method": "occlusion", "window": [2**64]}, 400, "parameters.window"),
    ("window-huge", {"method": "occlusion", "window": 10**4000}, 400, "parameters.window"),
    ("stride-0", {"method": "occlusion", "window": 2, "stride": 0}, 400, "parameters.stride"),
    ("stride-2^63", {"method": "occlusion", "window": 2, "stride": BIG}, 400, "parameters.stride"),
    ("stride-2^63-whole-window", {"method": "occlusion", "window": 10, "stride": BIG}, 200, ""),
    ("stride-negative", {"method": "occlusion", "window": 2, "stride": -1}, 400, "parameters.stride"),
    (
        "stride-list-too-long",
        {"method": "occlusion", "window": 2, "stride": [1, 1, 1]},
        400,
        "stride",
    ),
    ("baseline-2^63", {"baseline": BIG}, 200, ""),
    ("baseline-huge", {"baseline": 10**400}, 400, "parameters.baseline"),
    ("baseline-over-fp32", {"baseline": 10**39}, 400, "parameters.baseline"),
    ("baseline-list-huge", {"baseline": [10**400] * 10}, 400, "parameters.baseline"),
    ("baseline-object-huge", {"baseline": {"input": 10**400}}, 400, "parameters.baseline"),
    ("exact-an-integer", {"method": "shapley", "exact": 1}, 400, "parameters.exact"),
]


CASES: list[Case] = [
    # ---- zero-size batches and dimensions
    Case("bytes-shape-0", TEXT, {"inputs": [text_input([])]}, 400, "input 'text': expected at least one"),
    Case("bytes-shape-0-explain", TEXT, {"inputs": [text_input([])]}, 400, "input 'text'", "explain"),
    Case("fp-batch-0", SEED, {"inputs": [seed_input([0, 10], [])]}, 400, "input 'input': expected at least"),
    Case("fp-row-width-0", SEED, {"inputs": [seed_input([1, 0], [])]}, 400, "input 'input': expected shape"),
    Case("fp-batch-0-width-0", SEED, {"inputs": [seed_input([0, 0], [])]}, 400, "input 'input'"),
    Case("fp-batch-0-explain", SEED, {"inputs": [seed_input([0, 10], [])]}, 400, "input 'input'", "explain"),
    Case(
        "fp-shape-empty-list", SEED, {"inputs": [seed_input([], [0.5])]}, 400, "input 'input': expected shape"
    ),
    Case(
        "echo-batch-0",
        ECHO,
        {"inputs": [{**item, "shape": [0, 3], "data": []} for item in echo_inputs()]},
        400,
        "expected at least one row",
    ),
    # ---- what a signature's -1 cannot rule out: only the graph finds it (onnxruntime's plain FAIL)
    *[
        Case(
            f"pair-{name}-{operation}",
            PAIR,
            {"inputs": pair},
            400,
            "model 'pair-sum' v1 rejected the inputs",
            operation,
        )
        for name, pair in [
            ("batches-3-and-2", pair_inputs(3, 2)),
            ("batches-2-and-4", pair_inputs(2, 4)),
        ]
        for operation in ("infer", "explain")
    ],
    Case("no-inputs", SEED, {"inputs": []}, 400, "inputs"),
    Case("no-outputs", SEED, {"inputs": [seed_input()], "outputs": []}, 400, "outputs"),
    # ---- integer extremes in shapes
    Case("shape-negative", SEED, {"inputs": [seed_input([-1, 10])]}, 400, "expected non-negative"),
    Case("shape-2^31", SEED, {"inputs": [seed_input([2**31, 10])]}, 413, "MAAS_MAX_BATCH"),
    Case("shape-2^63", SEED, {"inputs": [seed_input([BIG, 10])]}, 413, "MAAS_MAX_BATCH"),
    Case("shape-minus-2^63", SEED, {"inputs": [seed_input([-BIG, 10])]}, 400, "expected non-negative"),
    Case(
        "shape-2^64",
        SEED,
        {"inputs": [seed_input([1, 2**64])]},
        413,
        "MAAS_MAX_ELEMENTS",
        async_answer=(400, "inputs[0].shape[1]: input should be a valid integer"),
    ),
    Case(
        "shape-product-overflows-int64", SEED, {"inputs": [seed_input([4096, 2**32, 2**32])]}, 413, "elements"
    ),
    Case("shape-0-by-2^63", SEED, {"inputs": [seed_input([0, BIG], [])]}, 413, "MAAS_MAX_ELEMENTS"),
    Case("text-shape-2^63", TEXT, {"inputs": [text_input(["a"], [BIG])]}, 413, "MAAS_MAX_BATCH"),
    # ---- request-level fields
    Case("id-an-integer", SEED, {"inputs": [seed_input()], "id": BIG}, 400, "id"),
    Case("parameters-huge-integer-ignored", SEED, {"inputs": [seed_input()], "parameters": {"x": BIG}}, 200),
    Case(
        "routing-key-huge-integer",
        SEED,
        {"inputs": [seed_input()], "parameters": {"routing_key": 10**4000}},
        200,
    ),
    Case(
        "binary-data-output-an-integer",
        SEED,
        {"inputs": [seed_input()], "parameters": {"binary_data_output": 1}},
        400,
        "parameters.binary_data_output",
    ),
    Case(
        "input-binary-data-size-2^63",
        SEED,
        {"inputs": [seed_input(data=None, parameters={"binary_data_size": BIG}) | {"data": None}]},
        400,
        "binary_data_size",
    ),
    # ---- explain parameters
    *[
        Case(f"explain-{name}", SEED, explain(parameters), status, fragment, "explain")
        for name, parameters, status, fragment in EXPLAIN_ROWS
    ],
    # ---- JSON's non-standard numbers: FP takes them, integers and BOOL refuse them
    *[
        Case(f"fp32-{name}", SEED, {"inputs": [seed_input(data=[value] + [0.5] * 9)]}, 200)
        for name, value in [
            ("nan", float("nan")),
            ("infinity", float("inf")),
            ("minus-infinity", float("-inf")),
            ("1e400", OUT_OF_RANGE),
        ]
    ],
    *[
        Case(
            f"{datatype.lower()}-{name}",
            ECHO,
            {"inputs": echo_inputs(datatype, [value, value, value])},
            status,
            fragment,
        )
        for datatype in ("FP16", "FP64")
        for name, value, status, fragment in [
            ("nan", float("nan"), 200, ""),
            ("1e400", OUT_OF_RANGE, 200, ""),
        ]
    ],
    # Integers past 64 bits are numbers to a float input, on every path: their nearest float, infinity
    # past float64, and an overflow of the narrower type refused as a float's would be.
    *[
        Case(
            f"{datatype.lower()}-integer-{name}",
            ECHO,
            {"inputs": echo_inputs(datatype, [value, 1, 1])},
            status,
            fragment,
        )
        for datatype, name, value, status, fragment in [
            ("FP64", "2^70", 2**70, 200, ""),
            ("FP64", "10^400", 10**400, 200, ""),
            ("FP64", "minus-10^400", -(10**400), 200, ""),
            ("FP32", "2^70", 2**70, 200, ""),
            ("FP32", "10^39", 10**39, 400, "expected values within FP32 range"),
            ("FP16", "2^70", 2**70, 400, "expected values within FP16 range"),
        ]
    ],
    *[
        Case(
            f"{datatype.lower()}-{name}",
            ECHO,
            {"inputs": echo_inputs(datatype, [value, 1, 1] if datatype != "BOOL" else [value, True, True])},
            400,
            f"({echo_input_name(datatype)!r}).data: expected {datatype}".replace('"', "'"),
        )
        for datatype in ("INT8", "INT32", "INT64", "UINT64", "BOOL")
        for name, value in [
            ("nan", float("nan")),
            ("infinity", float("inf")),
            ("minus-infinity", float("-inf")),
            ("1e400", OUT_OF_RANGE),
        ]
    ],
]


def body_text(document: dict[str, Any]) -> str:
    """JSON as clients send it: json.dumps writes NaN and Infinity; OUT_OF_RANGE becomes 1e400."""
    return json.dumps(document).replace(repr(OUT_OF_RANGE), "1e400")


def event_document(document: dict[str, Any]) -> dict[str, Any]:
    """What a JSON parser makes of body_text: 1e400 is infinity."""
    parsed: dict[str, Any] = json.loads(body_text(document))
    return parsed


# ---- the three paths


@pytest.fixture
def published(registry: ModelRegistry, published_seed: Manifest) -> None:
    for name, (files, draft) in (
        (TEXT, token_stats_model()),
        (ECHO, dtype_echo_model()),
        (PAIR, pair_sum_model()),
    ):
        registry.publish(name, files, draft)


@pytest.fixture
def functions(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published: None
) -> Iterator[tuple[ModuleType, ModuleType]]:
    set_function_env(monkeypatch)
    yield load_function_module("infer"), load_function_module("async")


def over_http(function: ModuleType, case: Case) -> tuple[int, dict[str, Any]]:
    path = f"/v2/models/{case.model}/{case.operation}"
    event = http_event("POST", path, body_text(case.document), headers=JSON_HEADERS)
    response = function.lambda_handler(event, None)
    return response["statusCode"], json.loads(response["body"])


def directly(function: ModuleType, case: Case) -> tuple[int, dict[str, Any]]:
    event = {"model": case.model, "operation": case.operation, **event_document(case.document)}
    answer: dict[str, Any] = function.lambda_handler(event, None)
    return int(answer.get("status", 200)), answer


def asynchronously(function: ModuleType, s3: Any, case: Case) -> tuple[int, dict[str, Any]]:
    record = copy.deepcopy(load_event("sqs_async_request.json")["Records"][0])
    key = re.sub(r"[^A-Za-z0-9._-]", "-", case.id)
    record["messageId"] = f"m-{key}"
    # A case that sets its own id gets its answer filed under the message id when that id is refused.
    document = {"model": case.model, "operation": case.operation, "id": f"r-{key}", **case.document}
    record["body"] = body_text(document)

    response = function.lambda_handler({"Records": [record]}, None)

    assert response == {"batchItemFailures": []}, "a client mistake is answered, never retried"
    name = f"r-{key}" if "id" not in case.document else f"m-{key}"
    stored = s3.get_object(Bucket=TEST_BUCKET, Key=f"results/{name}.json")["Body"].read()
    answer: dict[str, Any] = json.loads(stored)
    return int(answer.get("status", 200)), answer


def check(case: Case, status: int, answer: dict[str, Any], path: str) -> None:
    assert status == case.status, f"{path}: {answer}"
    if case.status == 200:
        assert "outputs" in answer or "predictions" in answer, f"{path}: {answer}"
        return
    message = answer["error"]
    assert case.fragment in message, f"{path}: {message}"
    # Declared sizes may be named; a number no int64 holds, or any payload text, never is.
    assert MARKER_TEXT not in message
    assert not re.search(r"\d{21,}", message), f"{path}: {message}"
    assert len(message) < 600, f"{path}: {message}"


def test_the_table_covers_both_classes_on_every_kind_of_field() -> None:
    assert len(CASES) >= 80
    assert len({case.id for case in CASES}) == len(CASES)


@cases("case", CASES)
def test_a_client_mistake_is_a_4xx_on_http_direct_invoke_and_async_alike(
    functions: tuple[ModuleType, ModuleType], s3: Any, case: Case
) -> None:
    infer, async_function = functions

    check(case, *over_http(infer, case), "http")
    check(case, *directly(infer, case), "direct invoke")
    if case.async_answer is not None:
        case = case._replace(status=case.async_answer[0], fragment=case.async_answer[1])
    check(case, *asynchronously(async_function, s3, case), "async")


# ---- formats only HTTP carries: KServe V1 instances and Triton's binary tensors


JSON_HEADERS = {"content-type": "application/json"}


class HttpCase(NamedTuple):
    id: str
    path: str
    headers: dict[str, str]
    # str travels as is; bytes travel base64-encoded, as API Gateway hands binary bodies over.
    body: str | bytes
    status: int
    fragment: str = ""


def v1(model: str, instances: Any, verb: str = "predict") -> tuple[str, dict[str, str], str]:
    return f"/v1/models/{model}:{verb}", JSON_HEADERS, body_text({"instances": instances})


def binary(model: str, inputs: list[dict[str, Any]], tail: bytes, **header: Any) -> tuple[str, str, bytes]:
    head = json.dumps({"inputs": inputs, **header}).encode()
    return f"/v2/models/{model}/infer", str(len(head)), head + tail


def echo_instance(datatype: str, value: Any) -> dict[str, Any]:
    """One V1 instance of dtype-echo: a row per input, `value` first in `datatype`'s."""
    instance = {item["name"]: item["data"] for item in echo_inputs()}
    instance[echo_input_name(datatype)] = [value, *instance[echo_input_name(datatype)][1:]]
    return instance


def binary_case(
    case_id: str, model: str, inputs: list[dict[str, Any]], tail: bytes, status: int, fragment: str
) -> HttpCase:
    path, length, body = binary(model, inputs, tail)
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": length}
    return HttpCase(case_id, path, headers, body, status, fragment)


HTTP_CASES: list[HttpCase] = [
    HttpCase("v1-no-instances", *v1(SEED, []), 400, "instances"),
    HttpCase("v1-empty-row", *v1(SEED, [[]]), 400, "input 'input': expected shape"),
    HttpCase("v1-no-texts", *v1(TEXT, []), 400, "instances"),
    HttpCase("v1-explain-no-instances", *v1(SEED, [], "explain"), 400, "instances"),
    HttpCase("v1-fp32-nan", *v1(SEED, [[float("nan")] + [0.5] * 9]), 200),
    HttpCase("v1-fp32-infinity", *v1(SEED, [[float("-inf")] + [0.5] * 9]), 200),
    HttpCase("v1-fp32-1e400", *v1(SEED, [[OUT_OF_RANGE] + [0.5] * 9]), 200),
    *[
        HttpCase(
            f"v1-{datatype.lower()}-{name}",
            *v1(ECHO, [echo_instance(datatype, value)]),
            400,
            f"expected {datatype}",
        )
        for datatype in ("INT32", "INT64", "BOOL")
        for name, value in [("nan", float("nan")), ("infinity", float("inf")), ("1e400", OUT_OF_RANGE)]
    ],
    HttpCase("v1-fp64-nan", *v1(ECHO, [echo_instance("FP64", float("nan"))]), 200),
    binary_case(
        "binary-bytes-shape-0",
        TEXT,
        [{"name": "text", "datatype": "BYTES", "shape": [0], "parameters": {"binary_data_size": 0}}],
        b"",
        400,
        "input 'text': expected at least one row",
    ),
    binary_case(
        "binary-fp32-batch-0",
        SEED,
        [{"name": "input", "datatype": "FP32", "shape": [0, 10], "parameters": {"binary_data_size": 0}}],
        b"",
        400,
        "input 'input': expected at least one row",
    ),
    binary_case(
        "binary-data-size-negative",
        SEED,
        [{"name": "input", "datatype": "FP32", "shape": [1, 10], "parameters": {"binary_data_size": -1}}],
        b"\0" * 40,
        400,
        "binary_data_size",
    ),
    binary_case(
        "binary-data-size-2^64",
        SEED,
        [{"name": "input", "datatype": "FP32", "shape": [1, 10], "parameters": {"binary_data_size": 2**64}}],
        b"\0" * 40,
        400,
        "binary_data_size",
    ),
    binary_case(
        "binary-bytes-length-prefix-2^32-1",
        TEXT,
        [{"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 4}}],
        struct.pack("<I", 2**32 - 1),
        400,
        "BYTES element 0 declares",
    ),
    HttpCase(
        "header-length-over-the-body",
        f"/v2/models/{SEED}/infer",
        {"content-type": "application/octet-stream", "inference-header-content-length": "999999999999999999"},
        b"{}",
        400,
        "Inference-Header-Content-Length",
    ),
    HttpCase(
        "header-length-2^64",
        f"/v2/models/{SEED}/infer",
        {"content-type": "application/octet-stream", "inference-header-content-length": str(2**64)},
        b"{}",
        400,
        "Inference-Header-Content-Length",
    ),
]


@cases("case", HTTP_CASES)
def test_a_client_mistake_in_v1_or_binary_form_is_a_4xx(
    functions: tuple[ModuleType, ModuleType], case: HttpCase
) -> None:
    infer, _ = functions
    event = http_event("POST", case.path, case.body, headers={**JSON_HEADERS, **case.headers})

    response = infer.lambda_handler(event, None)

    body = response["body"]
    answer = json.loads(base64.b64decode(body) if response.get("isBase64Encoded") else body)
    check(Case(case.id, "", {}, case.status, case.fragment), response["statusCode"], answer, "http")
