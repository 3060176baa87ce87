"""The async function as Lambda runs it: real SQS events whose bodies are V2 requests, answered in S3."""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.conftest import TEST_BUCKET, JsonLogs, load_event

if TYPE_CHECKING:
    from maas.training import TrainedModel


def record(body: Any, message_id: str) -> dict[str, Any]:
    base: dict[str, Any] = copy.deepcopy(load_event("sqs_async_request.json")["Records"][0])
    base["messageId"] = message_id
    base["body"] = body if isinstance(body, str) else json.dumps(body)
    return base


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


def result(s3: Any, request_id: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=TEST_BUCKET, Key=f"results/{request_id}.json")["Body"].read()
    document: dict[str, Any] = json.loads(body)
    return document


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


def test_a_batch_with_one_poison_message_reports_only_that_message(
    async_function: ModuleType, s3: Any
) -> None:
    records = [
        record(request("r-1", rows_of(1)), "m-1"),
        record("not json", "m-poison"),
        record(request("r-3", rows_of(2)), "m-3"),
        record([1, 2, 3], "m-poison-2"),
        # Deeper than Python's recursion limit: refused as poison, not an unexpected error.
        record("[" * 100_000, "m-poison-3"),
    ]

    response = async_function.lambda_handler({"Records": records}, None)

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "m-poison"},
            {"itemIdentifier": "m-poison-2"},
            {"itemIdentifier": "m-poison-3"},
        ]
    }
    assert result(s3, "r-1")["outputs"][0]["shape"] == [1, 10]
    assert result(s3, "r-3")["outputs"][0]["shape"] == [2, 10]


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
    first = s3.head_object(Bucket=TEST_BUCKET, Key="results/dup-1.json")
    async_function.lambda_handler(copy.deepcopy(event), None)
    # Two copies of one message in one batch (SQS standard queues may do that) are answered once too.
    async_function.lambda_handler(
        {"Records": [record(request("dup-2", rows_of(1)), "a"), record(request("dup-2", rows_of(1)), "b")]},
        None,
    )

    versions = s3.list_object_versions(Bucket=TEST_BUCKET, Prefix="results/").get("Versions", [])
    assert sorted(v["Key"] for v in versions) == ["results/dup-1.json", "results/dup-2.json"]
    assert s3.head_object(Bucket=TEST_BUCKET, Key="results/dup-1.json")["ETag"] == first["ETag"]


def test_a_storage_outage_is_transient_and_reported_for_retry(async_function: ModuleType, s3: Any) -> None:
    event = {"Records": [record(request("r-outage", rows_of(1)), "m-outage")]}
    app = async_function.app
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
    assert "message not processed" in json_logs.text
    assert "123.456" not in captured.out + captured.err + json_logs.text
