"""Swagger UI's "Try it out" sends the document's examples as they stand: each gets a 200 from seed-mlp."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from maas.registry import Manifest
from tests.support.events import JSON, http_event

# The operations a first user tries: V2 infer and explain (by name and pinned to a version), V1 predict
# and explain. Each must carry an example, or the test below would pass without trying it.
TRIED = {
    "post /v2/models/{name}/infer",
    "post /v2/models/{name}/versions/{version}/infer",
    "post /v2/models/{name}/explain",
    "post /v2/models/{name}/versions/{version}/explain",
    "post /v1/models/{name}:predict",
    "post /v1/models/{name}:explain",
}


def document(function: ModuleType) -> dict[str, Any]:
    raw = function.lambda_handler(http_event("GET", "/openapi.json"), None)
    assert raw["statusCode"] == 200
    parsed: dict[str, Any] = json.loads(raw["body"])
    return parsed


def examples(openapi: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each operation with a JSON body example: the path as Swagger UI fills it in, and the body."""
    found = {}
    for template, operations in openapi["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" not in body:
                continue
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    path = path.replace(f"{{{parameter['name']}}}", parameter["example"])
            found[f"{method} {template}"] = (path, body["example"])
    return found


def test_the_infer_explain_and_predict_operations_carry_examples_naming_seed_mlp(
    infer_function: ModuleType,
) -> None:
    found = examples(document(infer_function))

    assert set(found) >= TRIED
    assert all("/models/seed-mlp" in path for path, _ in found.values())


@pytest.mark.parametrize("operation", sorted(TRIED))
def test_each_example_as_it_stands_gets_a_200_from_seed_mlp(
    infer_function: ModuleType, published_seed: Manifest, operation: str
) -> None:
    path, body = examples(document(infer_function))[operation]
    assert "{" not in path, f"a path parameter without an example: {path}"

    event = http_event("POST", path, json.dumps(body), headers={"content-type": JSON})
    raw = infer_function.lambda_handler(event, None)

    answer = json.loads(raw["body"])
    assert raw["statusCode"] == 200, answer
    if operation.startswith("post /v2/"):
        assert answer["model_name"] == "seed-mlp" and answer["model_version"] == str(published_seed.version)
        names = {output["name"] for output in answer["outputs"]}
        assert ("input_attribution" in names) == operation.endswith("/explain")
    else:
        assert len(answer["predictions"]) == 1
        assert ("explanations" in answer) == operation.endswith(":explain")
