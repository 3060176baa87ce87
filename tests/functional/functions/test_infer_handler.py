"""The infer function's lambda_handler, driven by real API Gateway and Function URL event JSON."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from maas.registry import Manifest
from tests.support.events import JSON, http_event, load_event
from tests.support.functions import load_function_module
from tests.support.logs import JsonLogs

if TYPE_CHECKING:
    from maas.training import TrainedModel


def invoke(function: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = function.lambda_handler(event, None)
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    assert "application/json" in json.dumps(response.get("headers", {})) + json.dumps(
        response.get("multiValueHeaders", {})
    )
    return response["statusCode"], json.loads(body)


def event_rows(event: dict[str, Any]) -> np.ndarray:
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return np.asarray(json.loads(body)["inputs"][0]["data"], dtype=np.float32)


@pytest.mark.parametrize(
    "event_file", ["http_v2_infer.json", "rest_v1_infer.json", "function_url_infer.json"]
)
def test_every_http_payload_format_gets_the_torch_answer(
    infer_function: ModuleType, seed_model: TrainedModel, published_seed: Manifest, event_file: str
) -> None:
    event = load_event(event_file)
    status, body = invoke(infer_function, event)

    assert status == 200, body
    assert body["model_name"] == "seed-mlp"
    assert body["model_version"] == str(published_seed.version)
    assert body["id"] == "req-42"
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [3, 10])
    expected = seed_model.predict(event_rows(event))
    np.testing.assert_allclose(np.asarray(output["data"]).reshape(3, 10), expected, atol=1e-5)


def test_explicit_version_path(infer_function: ModuleType, published_seed: Manifest) -> None:
    path = f"/v2/models/seed-mlp/versions/{published_seed.version}/infer"
    status, body = invoke(infer_function, post(path, load_event("http_v2_infer.json")["body"]))
    assert status == 200 and body["model_version"] == "1"


def test_health_and_metadata(infer_function: ModuleType) -> None:
    assert invoke(infer_function, load_event("http_v2_health_live.json")) == (200, {"live": True})
    assert invoke(infer_function, load_event("http_v2_health_ready.json")) == (200, {"ready": True})
    status, metadata = invoke(infer_function, load_event("http_v2_model_metadata.json"))
    assert status == 200
    assert metadata == {
        "name": "seed-mlp",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }


def post(path: str, body: str) -> dict[str, Any]:
    return http_event("POST", path, body, headers={"content-type": JSON})


def infer_body(**fields: Any) -> str:
    item: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [3, 10], "data": [0.5] * 30}
    item.update(fields)
    return json.dumps({"inputs": [item]})


@pytest.mark.parametrize(
    ("path", "body", "status", "expected", "got"),
    [
        ("/v2/models/seed-mlp/infer", infer_body(shape=[3, 5], data=[0.5] * 15), 400, "[-1, 10]", "[3, 5]"),
        ("/v2/models/seed-mlp/infer", infer_body(datatype="INT64", data=[1] * 30), 400, "FP32", "INT64"),
        ("/v2/models/seed-mlp/infer", json.dumps({"inputs": []}), 400, "at least 1", "none"),
        ("/v2/models/seed-mlp/infer", infer_body(name="features"), 400, "['input']", "'features'"),
        ("/v2/models/seed-mlp/infer", "this is not json", 400, "expected JSON", "invalid JSON"),
        ("/v2/models/seed-mlp/infer", infer_body(data=[0.5] * 29), 400, "30 elements", "got 29"),
        ("/v2/models/no-such-model/infer", infer_body(), 404, "no-such-model", "not found"),
        ("/v2/models/seed-mlp/versions/9/infer", infer_body(), 404, "version 9", "not found"),
        ("/v2/models/seed-mlp/versions/canary/infer", infer_body(), 404, "alias 'canary'", "not set"),
        ("/v2/models/Not_Valid!/infer", infer_body(), 400, "[a-z0-9._-]", "'Not_Valid!'"),
        ("/v2/no/such/route", "", 404, "expected a V2 or V1 route", "POST /v2/no/such/route"),
    ],
)
def test_client_mistakes_get_a_4xx_naming_expected_and_got(
    infer_function: ModuleType, path: str, body: str, status: int, expected: str, got: str
) -> None:
    actual_status, answer = invoke(infer_function, post(path, body))
    assert actual_status == status
    assert set(answer) == {"error"}
    assert expected in answer["error"] and got in answer["error"], answer["error"]


def named_body(**fields: Any) -> str:
    """seed-mlp's request body with more top-level fields beside the inputs, as KServe's SDK sends."""
    return json.dumps({**json.loads(infer_body()), **fields})


LONG_NAME = "m" * 500


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/v2/models/seed-mlp/infer", {"model_name": "seed-mlp"}),
        ("/v2/models/seed-mlp/infer", {"model_name": None, "model_version": None}),
        # An alias in the path: the body may name the model, or the reference as the path writes it.
        ("/v2/models/seed-mlp@latest/infer", {"model_name": "seed-mlp"}),
        ("/v2/models/seed-mlp%40latest/infer", {"model_name": "seed-mlp@latest"}),
        ("/v2/models/seed-mlp/versions/1/infer", {"model_name": "seed-mlp", "model_version": "1"}),
        ("/v2/models/seed-mlp/versions/latest/infer", {"model_version": "latest"}),
        (
            "/v2/models/seed-mlp/versions/1/explain",
            {"model_name": "seed-mlp", "model_version": "1", "parameters": {"target": 0}},
        ),
    ],
)
def test_a_body_may_name_the_model_the_path_names(
    infer_function: ModuleType, path: str, names: dict[str, Any]
) -> None:
    status, body = invoke(infer_function, post(path, named_body(**names)))
    assert status == 200, body
    assert (body["model_name"], body["model_version"]) == ("seed-mlp", "1")


@pytest.mark.parametrize(
    ("path", "names", "message"),
    [
        (
            "/v2/models/seed-mlp/infer",
            {"model_name": "other-model"},
            "model_name: expected 'seed-mlp' (the model the path names) or no model_name, got 'other-model'",
        ),
        (
            "/v2/models/seed-mlp/explain",
            {"model_name": "other-model"},
            "model_name: expected 'seed-mlp' (the model the path names)",
        ),
        (
            "/v2/models/seed-mlp@latest/infer",
            {"model_name": "seed-mlp@staging"},
            "model_name: expected 'seed-mlp' or 'seed-mlp@latest' (the model the path names) or no "
            "model_name, got 'seed-mlp@staging'",
        ),
        (
            "/v2/models/seed-mlp/infer",
            {"model_name": LONG_NAME},
            "model_name: expected 'seed-mlp' (the model the path names) or no model_name, got a string "
            "of 500 characters",
        ),
        (
            "/v2/models/seed-mlp/infer",
            {"model_version": "1"},
            "model_version: expected none, as the path names no version (pin one with "
            "/v2/models/seed-mlp/versions/{version}/...), got '1'",
        ),
        (
            "/v2/models/seed-mlp@latest/infer",
            {"model_version": "1"},
            "model_version: expected none, as the path names no version",
        ),
        (
            "/v2/models/seed-mlp/versions/1/infer",
            {"model_version": "2"},
            "model_version: expected '1' (the path's version) or no model_version, got '2'",
        ),
        (
            "/v2/models/seed-mlp/versions/latest/infer",
            {"model_version": "1"},
            "model_version: expected 'latest' (the path's version) or no model_version, got '1'",
        ),
        ("/v2/models/seed-mlp/versions/1/infer", {"model_version": 1}, "model_version: "),
        ("/v2/models/seed-mlp/infer", {"model_name": ["seed-mlp"]}, "model_name: "),
        # Only the fields clients send are accepted: anything else is still refused by name.
        ("/v2/models/seed-mlp/infer", {"model": "seed-mlp"}, "model: unknown field"),
    ],
)
def test_a_body_that_names_another_model_or_version_is_refused(
    infer_function: ModuleType, path: str, names: dict[str, Any], message: str
) -> None:
    status, body = invoke(infer_function, post(path, named_body(**names)))
    assert status == 400
    assert set(body) == {"error"}
    assert body["error"].startswith(message), body["error"]
    assert LONG_NAME not in body["error"]


def test_a_known_path_with_the_wrong_method_is_405_with_allow(infer_function: ModuleType) -> None:
    path = "/v2/models/seed-mlp/infer"
    response = infer_function.lambda_handler(http_event("GET", path), None)
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"
    assert json.loads(response["body"]) == {"error": f"method: expected POST for {path}, got GET"}


def test_model_ready_loads_the_model_and_reports_its_version(infer_function: ModuleType) -> None:
    event = http_event("GET", "/v2/models/seed-mlp/ready")
    assert invoke(infer_function, event) == (200, {"name": "seed-mlp", "version": "1", "ready": True})
    assert infer_function.app.service.cache.loaded_keys() == [("seed-mlp", 1)]


def test_unknown_route_event_from_the_default_route(infer_function: ModuleType) -> None:
    status, body = invoke(infer_function, load_event("http_v2_unknown_route.json"))
    assert status == 404 and "GET /v2/no/such/route" in body["error"]


def test_an_http_event_of_no_known_payload_format_is_refused_with_a_clear_error(
    infer_function: ModuleType,
) -> None:
    response = infer_function.lambda_handler({"requestContext": {}, "rawPath": "/v2"}, None)
    assert response["statusCode"] == 400
    assert "expected an API Gateway" in json.loads(response["body"])["error"]


def test_payload_values_never_reach_the_logs(
    infer_function: ModuleType, capsys: pytest.CaptureFixture[str], json_logs: JsonLogs
) -> None:
    marker = 123.456789
    event = post("/v2/models/seed-mlp/infer", infer_body(data=[marker] * 30))
    assert invoke(infer_function, event)[0] == 200
    bad = post("/v2/models/seed-mlp/infer", infer_body(shape=[3, 5], data=[marker] * 15))
    assert invoke(infer_function, bad)[0] == 400
    captured = capsys.readouterr()
    assert "model loaded" in json_logs.text
    assert "123.456789" not in captured.out + captured.err + json_logs.text


def test_storage_outage_is_a_503_not_a_client_error(monkeypatch: pytest.MonkeyPatch, s3: Any) -> None:
    monkeypatch.setenv("MAAS_BUCKET", "bucket-that-does-not-exist")
    function = load_function_module("infer")
    status, body = invoke(function, load_event("http_v2_health_ready.json"))
    assert status == 503 and "bucket does not exist" in body["error"]
