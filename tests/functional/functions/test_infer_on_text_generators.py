"""The infer function given a text generator: its KV-cache graph is not something the V1/V2 tensor routes can
feed, so each model route answers a 400 that names the generation routes instead of an onnxruntime error."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from maas.registry import Manifest
from tests.support.events import http_event

IDS = json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v2/models/tiny-llm/ready", None),
        ("POST", "/v2/models/tiny-llm/infer", IDS),
        ("POST", "/v2/models/tiny-llm/explain", IDS),
        ("GET", "/v1/models/tiny-llm", None),
    ],
)
def test_a_model_route_of_the_infer_function_points_a_text_generator_to_the_generate_routes(
    infer_function: ModuleType, published_llm: Manifest, method: str, path: str, body: str | None
) -> None:
    response = infer_function.lambda_handler(http_event(method, path, body), None)

    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert "expected a model the infer routes run, got 'tiny-llm' v1, a text generator" in error
    assert "POST /v2/models/tiny-llm/generate" in error
