"""The infer function invoked directly (Step Functions, SDKs) and by the EventBridge warm-up schedule."""

from __future__ import annotations

import copy
import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from maas.registry import Manifest
from tests.support.events import load_event
from tests.support.functions import load_function_module

if TYPE_CHECKING:
    from maas.training import TrainedModel


def test_a_direct_invoke_gets_the_v2_response_as_json(
    infer_function: ModuleType, seed_model: TrainedModel, published_seed: Manifest
) -> None:
    event = load_event("direct_invoke_infer.json")

    response = infer_function.lambda_handler(event, None)

    assert (response["model_name"], response["model_version"], response["id"]) == (
        "seed-mlp",
        str(published_seed.version),
        "request-0001",
    )
    [output] = response["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [1, 10])
    expected = seed_model.predict(np.full((1, 10), 0.1, dtype=np.float32))
    np.testing.assert_allclose(np.asarray(output["data"]).reshape(1, 10), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"model": "no-such-model"}, 404, "no-such-model"),
        ({"model": "Bad Name"}, 400, "model name: expected"),
        ({"inputs": "nope"}, 400, "inputs"),
        ({"model": 7}, 400, "model"),
    ],
)
def test_a_bad_direct_invoke_returns_an_error_result(
    infer_function: ModuleType, change: dict[str, object], status: int, message: str
) -> None:
    event = copy.deepcopy(load_event("direct_invoke_infer.json")) | change

    response = infer_function.lambda_handler(event, None)

    assert response["status"] == status and message in response["error"]


def test_an_event_of_no_known_kind_is_refused(infer_function: ModuleType) -> None:
    response = infer_function.lambda_handler({"Records": []}, None)

    assert response["status"] == 400 and "direct invoke" in response["error"]


def test_warm_up_loads_the_configured_models_once(
    monkeypatch: pytest.MonkeyPatch, infer_function: ModuleType, published_seed: Manifest
) -> None:
    monkeypatch.setenv("MAAS_WARM_MODELS", "seed-mlp, no-such-model")
    function = load_function_module("infer")
    event = load_event("eventbridge_scheduled_warmup.json")

    first = function.lambda_handler(event, None)
    second = function.lambda_handler(event, None)

    assert first["loaded"] == [f"seed-mlp/versions/{published_seed.version}"]
    assert "no-such-model" in first["failed"]
    assert second["loaded"] == [] and second["already_warm"] == first["loaded"]
    assert function.app.service.cache.peek("seed-mlp", published_seed.version) is not None


def test_warm_up_with_nothing_configured_returns_at_once(infer_function: ModuleType) -> None:
    response = infer_function.lambda_handler(load_event("eventbridge_scheduled_warmup.json"), None)

    assert response == {"loaded": [], "already_warm": [], "failed": {}}


def event_with(data: list[float], shape: list[float] | None = None) -> dict[str, Any]:
    """The recorded event with other data: what Lambda's runtime hands over after reading NaN with json."""
    event = copy.deepcopy(load_event("direct_invoke_infer.json"))
    event["inputs"][0]["data"] = data
    if shape is not None:
        event["inputs"][0]["shape"] = shape
    return event


def test_a_direct_invoke_takes_nan_and_infinity_for_fp_inputs_and_answers_them_as_null(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    special = [math.nan, math.inf, -math.inf, float("1e400"), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    response = infer_function.lambda_handler(event_with(special), None)

    [output] = response["outputs"]
    expected = seed_model.predict(np.asarray([special], dtype=np.float32)).ravel()
    assert [value is None for value in output["data"]] == [not np.isfinite(value) for value in expected]


@pytest.mark.parametrize("first_dimension", [math.nan, math.inf, 1.5])
def test_a_direct_invoke_with_a_non_integer_dimension_is_a_client_mistake(
    infer_function: ModuleType, first_dimension: float
) -> None:
    response = infer_function.lambda_handler(event_with([0.0] * 10, [first_dimension, 10]), None)

    assert response["status"] == 400 and "shape" in response["error"]
