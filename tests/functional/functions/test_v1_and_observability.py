"""KServe V1, the model listing, and what the infer function reports about itself (logs, metrics, headers)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from maas.registry import Manifest
from tests.support import events as support_events
from tests.support.aws import TEST_BUCKET
from tests.support.events import JSON, load_event
from tests.support.functions import load_function_module
from tests.support.logs import JsonLogs

if TYPE_CHECKING:
    from maas.training import TrainedModel


def http_event(method: str, path: str, body: str | None = None) -> dict[str, Any]:
    return support_events.http_event(method, path, body, headers={"content-type": JSON} if body else None)


def call(function: ModuleType, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    raw = function.lambda_handler(http_event(method, path, None if body is None else json.dumps(body)), None)
    return raw["statusCode"], json.loads(raw["body"]), raw.get("headers", {})


def test_v1_predict_takes_instances_and_returns_the_torch_predictions(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    rows = seed_model.test_inputs["input"][:4]
    status, body, headers = call(
        infer_function, "POST", "/v1/models/seed-mlp:predict", {"instances": rows.tolist()}
    )
    assert status == 200, body
    np.testing.assert_allclose(np.asarray(body["predictions"]), seed_model.predict(rows), atol=1e-5)
    assert headers["x-maas-model-version"] == "1"


def test_v1_predict_follows_the_reference_grammar(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    rows = seed_model.test_inputs["input"][:1].tolist()
    assert call(infer_function, "POST", "/v1/models/seed-mlp@latest:predict", {"instances": rows})[0] == 200
    status, body, _ = call(infer_function, "POST", "/v1/models/seed-mlp@canary:predict", {"instances": rows})
    assert (status, body) == (404, {"error": "model 'seed-mlp': alias 'canary' is not set"})


def test_v1_listing_and_status(infer_function: ModuleType) -> None:
    assert call(infer_function, "GET", "/v1/models")[:2] == (200, {"models": ["seed-mlp"]})
    assert call(infer_function, "GET", "/v1/models/seed-mlp")[:2] == (
        200,
        {"name": "seed-mlp", "ready": True},
    )
    assert call(infer_function, "GET", "/v1/models/ghost")[0] == 404


def test_v2_model_listing_and_the_triton_repository_index(infer_function: ModuleType) -> None:
    assert call(infer_function, "GET", "/v2/models")[:2] == (
        200,
        {"models": [{"name": "seed-mlp", "versions": ["1"]}]},
    )
    status, index, _ = call(infer_function, "POST", "/v2/repository/index", {})
    assert (status, index) == (
        200,
        [{"name": "seed-mlp", "version": "1", "state": "UNAVAILABLE", "reason": ""}],
    )
    call(infer_function, "GET", "/v2/models/seed-mlp/ready")
    assert call(infer_function, "POST", "/v2/repository/index", {})[1][0]["state"] == "READY"


def test_an_alias_in_the_v2_name_segment_is_the_same_reference(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [0.0] * 10}]}
    status, answer, _ = call(infer_function, "POST", "/v2/models/seed-mlp%40latest/infer", body)
    assert status == 200 and answer["model_version"] == "1"


def test_server_metadata_lists_the_binary_extension(infer_function: ModuleType) -> None:
    status, body, _ = call(infer_function, "GET", "/v2")
    assert status == 200 and "binary_tensor_data" in body["extensions"]


def test_logs_carry_the_request_id_and_metrics_are_emitted_as_emf(
    infer_function: ModuleType, capsys: pytest.CaptureFixture[str], json_logs: JsonLogs
) -> None:
    event = load_event("http_v2_infer.json")
    infer_function.lambda_handler(event, None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    loaded = next(line for line in json_logs.lines() if line.get("message") == "model loaded")
    assert loaded["correlation_id"] == event["requestContext"]["requestId"]
    emf = [line for line in lines if "_aws" in line]
    metric_names = {
        m["Name"] for line in emf for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    }
    assert {"ColdStart", "ModelLoadMs", "InferenceMs", "RequestBytes"} <= metric_names


def test_client_errors_are_counted_by_status(
    infer_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    call(infer_function, "POST", "/v2/models/seed-mlp/infer", {"inputs": []})
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(line.get("Errors400") == [1.0] or line.get("Errors400") == 1.0 for line in emf)


def test_swagger_ui_and_openapi_document(infer_function: ModuleType) -> None:
    raw = infer_function.lambda_handler(http_event("GET", "/docs", None), None)
    assert raw["statusCode"] == 200 and "swagger" in raw["body"].lower()
    status, document, _ = call(infer_function, "GET", "/openapi.json")
    assert status == 200 and "/v2/models/{name}/infer" in document["paths"]


def test_the_docs_setting_switches_swagger_ui_off(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest
) -> None:
    monkeypatch.setenv("MAAS_BUCKET", TEST_BUCKET)
    monkeypatch.setenv("MAAS_DOCS", "0")
    function = load_function_module("infer")
    assert call(function, "GET", "/docs")[0] == 404
    assert call(function, "GET", "/openapi.json")[0] == 200
