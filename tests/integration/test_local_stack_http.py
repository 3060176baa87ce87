"""The whole system over real HTTP: template.yaml's routes, the infer function, moto S3, a real model.

Given seed-mlp trained for a few epochs and published as version 1 into the embedded store, the
gateway must answer exactly what the torch model computes, and map client mistakes to JSON errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from maas.local import LocalStack
from maas.training import TrainedModel, publish_trained


@pytest.fixture(scope="module")
def stack(isolated_module_env: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    with LocalStack(port=0, embedded=True) as running:
        yield running


@pytest.fixture(scope="module")
def seed_mlp(stack: LocalStack, seed_model: TrainedModel) -> TrainedModel:
    """The root conftest's tiny seed-mlp, published as version 1 into the stack's empty store."""
    manifest = publish_trained(seed_model, stack.registry)
    assert (manifest.name, manifest.version) == ("seed-mlp", 1)
    return seed_model


def _infer_body(rows: np.ndarray) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(rows.shape),
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    ).encode()


def test_infer_over_http_matches_the_torch_model(
    stack: LocalStack, seed_mlp: TrainedModel, http: Any
) -> None:
    rows = seed_mlp.test_inputs["input"][:3]

    result = http("POST", f"{stack.url}/v2/models/seed-mlp/infer", _infer_body(rows), "application/json")

    assert result.status == 200, result.body
    assert result.headers["Content-Type"].startswith("application/json")
    document = result.json()
    assert document["model_name"] == "seed-mlp"
    assert document["model_version"] == "1"
    (output,) = document["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [3, 10])
    served = np.asarray(output["data"], dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(served, seed_mlp.predict(rows), rtol=0, atol=1e-5)


def test_a_pinned_version_route_reaches_the_same_model(
    stack: LocalStack, seed_mlp: TrainedModel, http: Any
) -> None:
    rows = seed_mlp.test_inputs["input"][3:5]

    result = http(
        "POST", f"{stack.url}/v2/models/seed-mlp/versions/1/infer", _infer_body(rows), "application/json"
    )

    assert result.status == 200, result.body
    served = np.asarray(result.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, 10)
    np.testing.assert_allclose(served, seed_mlp.predict(rows), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2/health/live", {"live": True}),
        ("GET", "/v2/models/seed-mlp/ready", {"name": "seed-mlp", "ready": True}),
    ],
)
def test_health_and_readiness_routes(
    stack: LocalStack, seed_mlp: TrainedModel, http: Any, method: str, path: str, expected: dict[str, Any]
) -> None:
    result = http(method, stack.url + path)

    assert result.status == 200, result.body
    assert expected.items() <= result.json().items()


def test_an_unknown_route_is_a_json_404_from_the_function(stack: LocalStack, http: Any) -> None:
    result = http("GET", f"{stack.url}/no/such/route")

    assert result.status == 404
    assert "error" in result.json()


def test_a_body_that_is_not_json_is_a_400(stack: LocalStack, seed_mlp: TrainedModel, http: Any) -> None:
    result = http("POST", f"{stack.url}/v2/models/seed-mlp/infer", b"rows: 1, 2, 3", "application/json")

    assert result.status == 400
    assert isinstance(result.json()["error"], str)


def test_a_missing_model_is_a_404(stack: LocalStack, http: Any) -> None:
    result = http(
        "POST", f"{stack.url}/v2/models/absent/infer", _infer_body(np.zeros((1, 10))), "application/json"
    )

    assert result.status == 404
    assert "error" in result.json()


def test_the_function_sees_the_template_environment(stack: LocalStack) -> None:
    assert os.environ["MAAS_BUCKET"] == stack.store.bucket
    assert os.environ["MAAS_PROVIDER"] == "cpu"
    assert os.environ["POWERTOOLS_SERVICE_NAME"] == "maas"
    assert os.environ["AWS_ENDPOINT_URL"] == stack.store.endpoint_url
