"""The async function as Lambda runs it: real SQS events whose bodies are V2 requests, answered in S3."""

from __future__ import annotations

import copy
import json
import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.support.aws import TEST_BUCKET
from tests.support.events import load_event
from tests.support.logs import JsonLogs
from tests.support.queues import record, result, stored_versions

if TYPE_CHECKING:
    from maas.training import TrainedModel


def request(request_id: str | None, rows: np.ndarray, model: str = "seed-mlp") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def rows_of(count: int) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(count, 10)).astype(np.float32)


def test_the_recorded_event_is_answered_with_the_v2_response(
    async_function: ModuleType, s3: Any, seed_model: TrainedModel
) -> None:
    event = load_event("sqs_async_request.json")

    response = async_function.lambda_handler(event, None)

    assert response == {"batchItemFailures": []}
    answer = result(s3, "request-0001")
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("seed-mlp", "1", "request-0001")
    expected = seed_model.predict(np.full((1, 10), 0.1, dtype=np.float32))
    np.testing.assert_allclose(np.asarray(answer["outputs"][0]["data"]).reshape(1, 10), expected, atol=1e-5)


def test_a_batch_with_unreadable_bodies_answers_each_under_its_message_id_and_retries_none(
    async_function: ModuleType, s3: Any
) -> None:
    records = [
        record(request("r-1", rows_of(1)), "m-1"),
        record("not json", "m-not-json"),
        record(request("r-3", rows_of(2)), "m-3"),
    ]

    response = async_function.lambda_handler({"Records": records}, None)

    assert response == {"batchItemFailures": []}
    assert result(s3, "r-1")["outputs"][0]["shape"] == [1, 10]
    assert result(s3, "r-3")["outputs"][0]["shape"] == [2, 10]
    assert result(s3, "m-not-json") == {
        "id": "m-not-json",
        "status": 400,
        "error": "message: expected a JSON object with 'model', 'id' and 'inputs', got text that is not "
        "JSON; the answer is filed under the message id m-not-json",
    }


@pytest.mark.parametrize(
    ("body", "got"),
    [
        ("not json", "got text that is not JSON"),
        ('{"id": "r-x", "model": "seed-mlp", "inputs": [', "got text that is not JSON"),
        ("", "got nothing"),
        ("  \n\t", "got nothing"),
        ("[1, 2, 3]", "got a JSON array"),
        ('"a string"', "got a JSON string"),
        ("42", "got a JSON number"),
        ("1e400", "got a JSON number"),
        ("NaN", "got a JSON number"),
        ("null", "got a JSON null"),
        ("true", "got a JSON boolean"),
        # Deeper than any parser goes: the body's own id cannot be read, so the message id names the answer.
        ("[" * 100_000, "got JSON nested too deep to read"),
        ('{"id": "deep-id", "inputs": ' + "[" * 100_000, "got JSON nested too deep to read"),
        ("{'model': 'seed-mlp'}", "got text that is not JSON"),
        ("\ufeff\ufeff{}", "got text that is not JSON"),  # one BOM is skipped, not two
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_client_mistake_answered_under_the_message_id(
    async_function: ModuleType, s3: Any, body: str, got: str
) -> None:
    response = async_function.lambda_handler({"Records": [record(body, "m-unreadable")]}, None)

    assert response == {"batchItemFailures": []}
    answer = result(s3, "m-unreadable")
    assert answer["status"] == 400 and answer["id"] == "m-unreadable"
    assert answer["error"].startswith(
        f"message: expected a JSON object with 'model', 'id' and 'inputs', {got}"
    )


def test_a_message_id_that_cannot_name_a_result_is_the_only_poison(
    async_function: ModuleType, s3: Any
) -> None:
    response = async_function.lambda_handler(
        {"Records": [record("not json", "../escape"), record(request("fine", rows_of(1)), "m-fine")]}, None
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": "../escape"}]}
    assert result(s3, "fine")["outputs"][0]["shape"] == [1, 10]
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="escape")


HUGE_INTEGER = "1" + "0" * 5000  # past Python's 4,300-digit int() limit


def fp32_body(request_id: str, data: str, shape: str = "[1, 10]") -> str:
    """A request spelled as text, so it can hold what json.dumps never writes."""
    return (
        f'{{"id": "{request_id}", "model": "seed-mlp", '
        f'"inputs": [{{"name": "input", "datatype": "FP32", "shape": {shape}, "data": {data}}}]}}'
    )


@pytest.mark.parametrize(
    ("data", "expected_input"),
    [
        (f"[{HUGE_INTEGER}" + ", 0" * 9 + "]", [math.inf] + [0.0] * 9),
        (
            "[NaN, Infinity, -Infinity, 1e400, -1e400, 1e-400, 0, 0, 0, 0]",
            [math.nan, math.inf, -math.inf, math.inf, -math.inf] + [0.0] * 5,
        ),
    ],
)
def test_fp_inputs_take_nan_infinity_and_numbers_past_float64_and_are_answered(
    async_function: ModuleType, s3: Any, seed_model: TrainedModel, data: str, expected_input: list[float]
) -> None:
    response = async_function.lambda_handler(
        {"Records": [record(fp32_body("special", data), "m-special")]}, None
    )

    assert response == {"batchItemFailures": []}
    data = result(s3, "special")["outputs"][0]["data"]
    expected = seed_model.predict(np.asarray([expected_input], dtype=np.float32)).ravel()
    # JSON has no NaN or Infinity to answer with: those outputs are null, the others onnxruntime's values.
    assert [value is None for value in data] == [not np.isfinite(value) for value in expected]
    served = np.asarray([value for value in data if value is not None], dtype=np.float32)
    np.testing.assert_allclose(served, expected[np.isfinite(expected)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (fp32_body("huge-shape", "[0]", shape=f"[{HUGE_INTEGER}, 10]"), "shape"),
        (fp32_body("huge-shape-2", "[0]", shape="[1e400, 10]"), "shape"),
        (fp32_body("nan-shape", "[0]", shape="[NaN, 10]"), "shape"),
        (fp32_body("deep", "[" * 500 + "]" * 500), "expected JSON nested at most 32 levels deep"),
        (fp32_body("id-then", "[0]").replace('"seed-mlp"', '"seed-mlp", "model": 7'), "model"),
    ],
)
def test_a_readable_body_with_a_bad_value_gets_an_error_result_under_its_own_id(
    async_function: ModuleType, s3: Any, body: str, message: str
) -> None:
    request_id = json.loads(body, parse_int=str, parse_float=str)["id"]

    response = async_function.lambda_handler({"Records": [record(body, "m-bad-value")]}, None)

    assert response == {"batchItemFailures": []}
    answer = result(s3, request_id)
    assert answer["status"] == 400 and message in answer["error"]


def test_duplicate_keys_keep_the_last_value_as_http_does(async_function: ModuleType, s3: Any) -> None:
    body = fp32_body("second", json.dumps([0.5] * 10)).replace(
        '{"id": "second"', '{"id": "first", "id": "second"'
    )

    async_function.lambda_handler({"Records": [record(body, "m-dup-keys")]}, None)

    assert result(s3, "second")["outputs"][0]["shape"] == [1, 10]
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="results/first")


def test_a_byte_order_mark_before_the_json_is_skipped(async_function: ModuleType, s3: Any) -> None:
    body = "\ufeff" + json.dumps(request("bom", rows_of(1)))

    async_function.lambda_handler({"Records": [record(body, "m-bom")]}, None)

    assert result(s3, "bom")["outputs"][0]["shape"] == [1, 10]


def test_an_unreadable_body_delivered_twice_leaves_one_result(async_function: ModuleType, s3: Any) -> None:
    event = {"Records": [record("not json", "m-twice")]}

    async_function.lambda_handler(event, None)
    written = stored_versions(s3, "results/")
    async_function.lambda_handler(copy.deepcopy(event), None)

    assert [key for key, _ in written] == ["results/m-twice.json"]
    assert stored_versions(s3, "results/") == written


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (request("bad-1", rows_of(1), model="no-such-model"), 404, "no-such-model"),
        (
            {
                **request("bad-2", rows_of(1)),
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
            },
            400,
            "expected shape [-1, 10]",
        ),
        ({"id": "bad-3", "inputs": []}, 400, "model"),
    ],
)
def test_a_bad_request_gets_an_error_result_and_is_not_retried(
    async_function: ModuleType, s3: Any, body: dict[str, Any], status: int, message: str
) -> None:
    response = async_function.lambda_handler({"Records": [record(body, "m-bad")]}, None)

    assert response == {"batchItemFailures": []}
    answer = result(s3, body["id"])
    assert answer["status"] == status and message in answer["error"]
    assert answer["id"] == body["id"]


def test_without_an_id_the_message_id_names_the_result(async_function: ModuleType, s3: Any) -> None:
    async_function.lambda_handler({"Records": [record(request(None, rows_of(1)), "m-no-id")]}, None)

    assert result(s3, "m-no-id")["model_name"] == "seed-mlp"


def test_an_id_that_cannot_name_a_key_is_answered_under_the_message_id(
    async_function: ModuleType, s3: Any
) -> None:
    async_function.lambda_handler({"Records": [record(request("../escape", rows_of(1)), "m-bad-id")]}, None)

    answer = result(s3, "m-bad-id")
    assert answer["status"] == 400 and answer["error"].startswith("id: expected 1-128 characters")
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="escape")


def test_the_same_message_twice_leaves_one_result(async_function: ModuleType, s3: Any) -> None:
    event = {"Records": [record(request("dup-1", rows_of(1)), "m-dup")]}

    async_function.lambda_handler(event, None)
    written = stored_versions(s3, "results/")
    async_function.lambda_handler(copy.deepcopy(event), None)
    assert stored_versions(s3, "results/") == written
    # Two copies of one message in one batch (SQS standard queues may do that) are answered once too.
    async_function.lambda_handler(
        {"Records": [record(request("dup-2", rows_of(1)), "a"), record(request("dup-2", rows_of(1)), "b")]},
        None,
    )

    assert [key for key, _ in stored_versions(s3, "results/")] == ["results/dup-1.json", "results/dup-2.json"]


def test_a_storage_outage_is_transient_and_reported_for_retry(async_function: ModuleType, s3: Any) -> None:
    event = {"Records": [record(request("r-outage", rows_of(1)), "m-outage")]}
    app = async_function.app.adapter
    app.bucket = "no-such-bucket"  # the function's own client, pointed at a bucket that is not there

    response = async_function.lambda_handler(event, None)

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-outage"}]}


def test_payload_values_never_reach_the_logs(
    async_function: ModuleType, s3: Any, capsys: pytest.CaptureFixture[str], json_logs: JsonLogs
) -> None:
    good = request("private-1", np.full((1, 10), 123.456789, dtype=np.float32))
    bad = {
        **good,
        "id": "private-2",
        "inputs": [{**good["inputs"][0], "shape": [1, 5], "data": [123.456789] * 5}],
    }
    poison = "123.456789 is not an object"

    async_function.lambda_handler(
        {"Records": [record(good, "p1"), record(bad, "p2"), record(poison, "p3")]}, None
    )

    captured = capsys.readouterr()
    assert "async request answered with an error" in json_logs.text
    assert "123.456" not in captured.out + captured.err + json_logs.text
