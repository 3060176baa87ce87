"""The infer fast path answers the common infer and explain events exactly as the router does, and leaves
every other event to the router.

Each event goes once through the fast path and once through the router of the same function (the same
service, the same loaded model), and the two response dicts must be equal: status, headers, body to the byte.
"""

from __future__ import annotations

import base64
import copy
import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from maas.apps.infer import InferFunction
from maas.registry import Manifest
from tests.support.events import JSON, http_event, json_event, load_event
from tests.support.functions import start_function

ROWS = [[0.1 * (i + j) - 1.0 for j in range(10)] for i in range(3)]
FLAT: dict[str, Any] = {
    "id": "req-7",
    "inputs": [
        {
            "name": "input",
            "datatype": "FP32",
            "shape": [3, 10],
            "data": [value for row in ROWS for value in row],
        }
    ],
}
INFER = "/v2/models/seed-mlp/infer"


@pytest.fixture
def infer_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "infer", MAAS_MAX_ELEMENTS="1000", MAAS_MAX_REQUEST_BYTES="20000")


def both_ways(function: ModuleType, event: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The fast path's answer (None: not taken) and the router's, each on its own copy of the event."""
    app: InferFunction = function.app
    fast = app.fast.answer(copy.deepcopy(event), None)
    return fast, app.http.resolve(copy.deepcopy(event), None)


def rest_event(path: str, body: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event("rest_v1_infer.json")
    event["path"] = path
    event["body"] = body
    event["headers"] = {**event["headers"], **(headers or {})}
    return event


def function_url_event(path: str, body: str) -> dict[str, Any]:
    event = load_event("function_url_infer.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["body"] = base64.b64encode(body.encode()).decode()
    return event


def binary_event(path: str) -> dict[str, Any]:
    """FLAT's request in Triton's binary format, asking for binary outputs."""
    tensor = {key: value for key, value in FLAT["inputs"][0].items() if key != "data"}
    document = {"inputs": [{**tensor, "parameters": {"binary_data_size": 120}}]}
    header = json.dumps({**document, "parameters": {"binary_data_output": True}}).encode()
    body = header + np.asarray(ROWS, dtype="<f4").tobytes()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return http_event("POST", path, body, headers=headers)


def with_version(document: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**document, **fields}


TAKEN: dict[str, Any] = {
    "http api, flat JSON": lambda: json_event("POST", INFER, FLAT),
    "http api, nested JSON": lambda: load_event("http_v2_infer.json"),
    "http api, pinned version": lambda: json_event("POST", "/v2/models/seed-mlp/versions/1/infer", FLAT),
    "http api, routing key header": lambda: json_event(
        "POST", INFER, FLAT, headers={"x-maas-routing-key": "caller-1"}
    ),
    "http api, body names the model": lambda: json_event(
        "POST", INFER, with_version(FLAT, model_name="seed-mlp")
    ),
    "http api, one output asked for": lambda: json_event(
        "POST", INFER, {**FLAT, "outputs": [{"name": "output"}]}
    ),
    "http api, binary both ways": lambda: binary_event(INFER),
    "http api, explain": lambda: json_event(
        "POST",
        "/v2/models/seed-mlp/explain",
        {**FLAT, "parameters": {"method": "occlusion", "target": 0, "window": 2}},
    ),
    "rest api, flat JSON": lambda: rest_event(INFER, json.dumps(FLAT)),
    "rest api, nested JSON": lambda: load_event("rest_v1_infer.json"),
    "function url, base64 JSON": lambda: function_url_event(INFER, json.dumps(FLAT)),
    "function url, the event file": lambda: load_event("function_url_infer.json"),
}

ERRORS: dict[str, tuple[int, Any]] = {
    "unknown datatype": (
        400,
        lambda: json_event("POST", INFER, {"inputs": [{**FLAT["inputs"][0], "datatype": "X"}]}),
    ),
    "wrong element count": (
        400,
        lambda: json_event("POST", INFER, {"inputs": [{**FLAT["inputs"][0], "shape": [2, 10]}]}),
    ),
    "body names another model": (
        400,
        lambda: json_event("POST", INFER, with_version(FLAT, model_name="other")),
    ),
    "not JSON": (400, lambda: http_event("POST", INFER, "{", headers={"content-type": JSON})),
    "an alias not set": (404, lambda: json_event("POST", "/v2/models/seed-mlp%40canary/infer", FLAT)),
    "unknown model": (404, lambda: json_event("POST", "/v2/models/no-such-model/infer", FLAT)),
    "too many elements": (
        413,
        lambda: json_event("POST", INFER, {"inputs": [{**FLAT["inputs"][0], "shape": [3, 1000]}]}),
    ),
    "body too large": (413, lambda: rest_event(INFER, json.dumps(FLAT) + " " * 20000)),
    "unsupported media type": (
        415,
        lambda: http_event("POST", INFER, json.dumps(FLAT), headers={"content-type": "text/html"}),
    ),
    "unsupported encoding": (
        415,
        lambda: http_event(
            "POST", INFER, json.dumps(FLAT), headers={"content-type": JSON, "content-encoding": "br"}
        ),
    ),
}

NOT_TAKEN: dict[str, Any] = {
    "GET on the infer route (405)": lambda: http_event("GET", INFER),
    "model metadata": lambda: load_event("http_v2_model_metadata.json"),
    "health": lambda: load_event("http_v2_health_live.json"),
    "unknown route": lambda: load_event("http_v2_unknown_route.json"),
    "rest api, trailing slash": lambda: rest_event(INFER + "/", json.dumps(FLAT)),
    "http api, a named stage": lambda: {
        **json_event("POST", "/prod" + INFER, FLAT),
        "requestContext": {**json_event("POST", INFER, FLAT)["requestContext"], "stage": "prod"},
    },
    "v1 predict": lambda: json_event("POST", "/v1/models/seed-mlp:predict", {"instances": ROWS}),
    "not a proxy event": lambda: {"requestContext": {"requestId": "x"}},
}


@pytest.mark.parametrize("case", list(TAKEN))
def test_the_fast_path_answers_as_the_router_does(infer_function: ModuleType, case: str) -> None:
    fast, general = both_ways(infer_function, TAKEN[case]())

    assert general["statusCode"] == 200, general["body"]
    assert fast == general


@pytest.mark.parametrize("case", list(ERRORS))
def test_the_fast_path_refuses_as_the_router_does(infer_function: ModuleType, case: str) -> None:
    status, build = ERRORS[case]
    fast, general = both_ways(infer_function, build())

    assert general["statusCode"] == status, general["body"]
    assert fast == general


@pytest.mark.parametrize("case", list(NOT_TAKEN))
def test_every_other_event_goes_to_the_router(infer_function: ModuleType, case: str) -> None:
    event = NOT_TAKEN[case]()
    app: InferFunction = infer_function.app

    assert app.fast.answer(copy.deepcopy(event), None) is None
    assert app.answer(copy.deepcopy(event), None) == app.http.resolve(event, None)


def test_a_method_the_route_does_not_take_is_told_which_it_does(infer_function: ModuleType) -> None:
    response = infer_function.lambda_handler(http_event("GET", INFER), None)

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "POST"


def test_an_infer_only_container_never_builds_the_router(infer_function: ModuleType) -> None:
    app: InferFunction = infer_function.app
    response = infer_function.lambda_handler(json_event("POST", INFER, FLAT), None)

    assert response["statusCode"] == 200
    assert "http" not in vars(app)
    infer_function.lambda_handler(load_event("http_v2_health_live.json"), None)
    assert "http" in vars(app)


def test_a_fast_answer_logs_its_metrics_as_one_emf_line(
    infer_function: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    event = json_event("POST", INFER, FLAT)
    infer_function.lambda_handler(event, None)  # the cold one: ColdStart, ModelLoadMs
    capsys.readouterr()

    infer_function.lambda_handler(event, None)

    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert (directive["Namespace"], directive["Dimensions"]) == ("maas", [["service"]])
    assert [(m["Name"], m["Unit"]) for m in directive["Metrics"]] == [
        ("InferenceMs", "Milliseconds"),
        ("RequestBytes", "Bytes"),
    ]
    assert line["service"] == "maas"
    assert line["RequestBytes"] == [float(len(event["body"]))]
