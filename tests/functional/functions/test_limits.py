"""Limits through the real handlers: compressed bodies, JSON depth, string element size and the time budget.

Given a text model (BYTES `text` [-1] lower-cased by onnxruntime) and a deliberately slow model (a chain
of 1024 x 1024 MatMuls) published to moto, each function is imported fresh with the limit under test set in
its environment, as Lambda would start it. Every refusal is a 4xx or 504 whose one-line error names the
field, the limit and its environment variable, and never quotes the payload.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from maas.api.openapi import openapi_document
from maas.registry import ModelRegistry
from tests.functional.functions.binary_text import binary_text_body
from tests.support import events as support_events
from tests.support.functions import load_function_module, set_function_env
from tests.support.jobs import Context, job_event, read_lines, read_status, submit
from tests.support.models import SLOW_MODEL, SLOW_WIDTH, slow_chain_model, text_normalizer_model
from tests.support.queues import record, result

TEXT_MODEL = "lowercase"
TEXT_INFER = f"/v2/models/{TEXT_MODEL}/infer"
TEXT_PREDICT = f"/v1/models/{TEXT_MODEL}:predict"
SLOW_INFER = f"/v2/models/{SLOW_MODEL}/infer"
JSON = {"content-type": "application/json"}
SECRET = "SSN-123-45-6789"
MAX_STRING_BYTES = 16

Loader = Callable[..., ModuleType]


@pytest.fixture
def text_model(registry: ModelRegistry) -> ModelRegistry:
    registry.publish(TEXT_MODEL, *text_normalizer_model())
    return registry


@pytest.fixture
def slow_model(registry: ModelRegistry) -> ModelRegistry:
    """Published only for the time budget tests: building and storing its 4 MB weight is not free."""
    registry.publish(SLOW_MODEL, *slow_chain_model())
    return registry


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch, s3: Any, text_model: ModelRegistry) -> Loader:
    """Import functions/<function>/app.py with these extra environment variables, as a new container."""
    set_function_env(monkeypatch, MAAS_WARMUP="0", MAAS_INTRA_OP_THREADS="1")

    def loader(function: str = "infer", **env: str) -> ModuleType:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_function_module(function)

    return loader


def http_event(
    path: str, body: str | bytes, *, method: str = "POST", headers: Mapping[str, str] = JSON
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event; a body that is not text travels base64-encoded, as on API Gateway."""
    return support_events.http_event(method, path, body, headers=headers)


def answer(function: ModuleType, event: dict[str, Any], context: Any = None) -> tuple[int, dict[str, Any]]:
    response = function.lambda_handler(event, context)
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body)


def text_request(items: Sequence[str], **input_fields: Any) -> dict[str, Any]:
    item = {"name": "text", "datatype": "BYTES", "shape": [len(items)], "data": list(items), **input_fields}
    return {"inputs": [item]}


def nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` objects, one inside the next, around `leaf`."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def slow_request() -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, SLOW_WIDTH], "data": [0.5] * SLOW_WIDTH}]
    }


class RemainingTime:
    """The one method of Lambda's context the budget reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# ---- compressed bodies (MAAS_COMPRESSED_BODIES)


def test_given_compressed_bodies_off_then_a_gzip_body_is_415_naming_the_setting_and_a_plain_one_is_served(
    load: Loader,
) -> None:
    documents = {TEXT_INFER: text_request(["Hello"]), TEXT_PREDICT: {"instances": ["Hello"]}}
    plain = http_event(
        TEXT_INFER, json.dumps(text_request(["Hello"])), headers={**JSON, "content-encoding": "identity"}
    )

    # Both ways of turning them off, each in a function of its own.
    settings = ("0", "off")
    gzip_answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    plain_answers: dict[str, tuple[int, Any]] = {}
    for setting in settings:
        infer = load(MAAS_COMPRESSED_BODIES=setting)
        for path, document in documents.items():
            body = gzip.compress(json.dumps(document).encode())
            event = http_event(path, body, headers={**JSON, "content-encoding": "gzip"})
            gzip_answers[setting, path] = answer(infer, event)
        status, served = answer(infer, copy.deepcopy(plain))
        plain_answers[setting] = (status, served["outputs"][0]["data"] if status == 200 else served)

    refused = (
        415,
        {
            "error": "Content-Encoding: expected identity, as compressed bodies are off "
            "(MAAS_COMPRESSED_BODIES), got 'gzip'"
        },
    )
    assert gzip_answers == {(setting, path): refused for setting in settings for path in documents}
    assert plain_answers == dict.fromkeys(settings, (200, ["hello"]))


def test_given_compressed_bodies_on_then_the_same_gzip_body_is_served(load: Loader) -> None:
    infer = load()
    body = gzip.compress(json.dumps(text_request(["Hello"])).encode())

    status, answered = answer(
        infer, http_event(TEXT_INFER, body, headers={**JSON, "content-encoding": "gzip"})
    )

    assert status == 200, answered
    assert answered["outputs"][0]["data"] == ["hello"]


# ---- JSON depth (MAAS_MAX_JSON_DEPTH)

PATHOLOGICAL_BODIES = {
    "100000-open-brackets": "[" * 100_000,
    "100000-nested-objects": '{"a":' * 100_000,
    "100000-deep-data": '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": '
    + "[" * 100_000,
    "100000-deep-parameters": '{"parameters": ' + '{"a":' * 100_000,
}


DEEP_DATA = json.loads("[" * 30 + '"a"' + "]" * 30)
# 33 levels each: the root object, then 32 more.
TOO_DEEP_V2 = {
    "parameters": {**text_request(["Hello"]), "parameters": nested(32)},
    "inputs[0].parameters": text_request(["Hello"], parameters=nested(30)),
    "outputs[0].parameters": {
        **text_request(["Hello"]),
        "outputs": [{"name": "lowered", "parameters": nested(30)}],
    },
    "inputs[0].data": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": DEEP_DATA}]},
}


def too_deep(where: str, limit: int = 32) -> dict[str, str]:
    expected = f"expected JSON nested at most {limit} levels deep (MAAS_MAX_JSON_DEPTH), got deeper"
    return {"error": f"{where}: {expected}"}


def test_a_pathologically_nested_body_is_a_400_naming_the_depth_limit(load: Loader) -> None:
    infer = load()
    expected = "request body: expected JSON nested at most 32 levels deep (MAAS_MAX_JSON_DEPTH), got deeper"

    answers = {
        (path, kind): answer(infer, http_event(path, body))
        for path in (TEXT_INFER, TEXT_PREDICT)
        for kind, body in PATHOLOGICAL_BODIES.items()
    }

    wrong = {
        case: (status, error)
        for case, (status, error) in answers.items()
        if not (status == 400 and error["error"].startswith(expected))
    }
    assert wrong == {}


def test_a_pathologically_nested_registry_body_is_a_400(load: Loader) -> None:
    registry = load("registry")
    path = f"/registry/models/{TEXT_MODEL}/aliases/staging"

    answers = {
        kind: answer(registry, http_event(path, body, method="PUT"))
        for kind, body in PATHOLOGICAL_BODIES.items()
    }

    wrong = {
        kind: (status, error)
        for kind, (status, error) in answers.items()
        if not (status == 400 and "(MAAS_MAX_JSON_DEPTH)" in error["error"])
    }
    assert wrong == {}


def test_given_a_depth_limit_then_requests_within_it_are_served_and_deeper_ones_named(load: Loader) -> None:
    infer = load(MAAS_MAX_JSON_DEPTH="7")
    # Root, inputs and the input object, then parameters and the 3 levels of the note: 7.
    within = text_request(["Hello"], parameters={"note": nested(3)})
    deeper = text_request(["Hello"], parameters={"note": nested(4)})

    status, body = answer(infer, http_event(TEXT_INFER, json.dumps(within)))
    assert status == 200, body

    status, body = answer(infer, http_event(TEXT_INFER, json.dumps(deeper)))
    assert (status, body) == (400, too_deep("inputs[0].parameters", 7))


TOO_DEEP_V1 = {
    "parameters": {"instances": ["Hello"], "parameters": nested(32)},
    "instances": {"instances": json.loads("[" * 32 + '"a"' + "]" * 32)},
}


def test_a_request_nested_past_the_default_limit_names_the_field_on_v2_v1_and_direct_invoke(
    load: Loader,
) -> None:
    infer = load()
    direct_event = {"model": TEXT_MODEL, **text_request(["Hello"], parameters=nested(40))}

    v2_answers = {
        where: answer(infer, http_event(TEXT_INFER, json.dumps(document)))
        for where, document in TOO_DEEP_V2.items()
    }
    v1_answers = {
        where: answer(infer, http_event(TEXT_PREDICT, json.dumps(document)))
        for where, document in TOO_DEEP_V1.items()
    }
    direct_answer = infer.lambda_handler(direct_event, None)

    assert v2_answers == {where: (400, too_deep(where)) for where in TOO_DEEP_V2}
    assert v1_answers == {where: (400, too_deep(where)) for where in TOO_DEEP_V1}
    assert direct_answer == {**too_deep("inputs[0].parameters"), "status": 400}


def test_an_async_request_nested_past_the_limit_is_answered_with_an_error_result(
    load: Loader, s3: Any
) -> None:
    function = load("async")
    body = {"model": TEXT_MODEL, "id": "deep-1", **text_request(["Hello"]), "parameters": nested(40)}

    response = function.lambda_handler({"Records": [record(body, "m-deep")]}, None)

    assert response == {"batchItemFailures": []}
    document = result(s3, "deep-1")
    assert (document["status"], {"error": document["error"]}) == (400, too_deep("parameters"))


# ---- string elements (MAAS_MAX_STRING_BYTES)

OVER_LIMIT = {
    # case: (texts, the index of the first one over 16 bytes, its UTF-8 size)
    "ascii": (["short", SECRET + "-and-more"], 1, 24),
    # 5 characters, but 20 bytes of UTF-8: the limit counts bytes.
    "four-byte-characters": (["\N{GRINNING FACE}" * 5], 0, 20),
}


def string_too_large(where: str, index: int, size: int) -> str:
    return (
        f"{where}: BYTES element {index} holds {size} bytes, "
        f"expected at most {MAX_STRING_BYTES} (MAAS_MAX_STRING_BYTES)"
    )


def test_given_a_string_limit_then_strings_at_it_are_served_and_longer_ones_are_413_naming_input_and_index(
    load: Loader,
) -> None:
    infer = load(MAAS_MAX_STRING_BYTES=str(MAX_STRING_BYTES))
    # At the limit by bytes: 16 ASCII characters, and 4 characters of 4 bytes each.
    at_limit = ["A" * MAX_STRING_BYTES, "\N{GRINNING FACE}" * 4]
    at_limit_headers, at_limit_binary = binary_text_body([text.encode() for text in at_limit])
    over_headers, over_binary = binary_text_body([b"ok", b"fine", (SECRET + "-and-more").encode()])

    served = {
        "v2 json": answer(infer, http_event(TEXT_INFER, json.dumps(text_request(at_limit)))),
        "v2 binary": answer(infer, http_event(TEXT_INFER, at_limit_binary, headers=at_limit_headers)),
    }
    refused = {
        **{
            f"v2 json, {case}": answer(infer, http_event(TEXT_INFER, json.dumps(text_request(texts))))
            for case, (texts, _, _) in OVER_LIMIT.items()
        },
        "v2 binary": answer(infer, http_event(TEXT_INFER, over_binary, headers=over_headers)),
        "v1 predict": answer(
            infer, http_event(TEXT_PREDICT, json.dumps({"instances": ["a", SECRET + "-and-more"]}))
        ),
    }
    direct_invoke = infer.lambda_handler({"model": TEXT_MODEL, **text_request([SECRET + "-and-more"])}, None)

    assert [status for status, _ in served.values()] == [200, 200], served
    assert served["v2 json"][1]["outputs"][0]["data"] == ["a" * MAX_STRING_BYTES, "\N{GRINNING FACE}" * 4]
    assert refused == {
        **{
            f"v2 json, {case}": (413, {"error": string_too_large("inputs[0] ('text')", index, size)})
            for case, (_, index, size) in OVER_LIMIT.items()
        },
        "v2 binary": (413, {"error": string_too_large("inputs[0] ('text')", 2, 24)}),
        "v1 predict": (413, {"error": string_too_large("instances", 1, 24)}),
    }
    assert direct_invoke["status"] == 413
    assert SECRET not in direct_invoke["error"]


def _npy(texts: list[str]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(texts))
    return buffer.getvalue()


JOB_INPUTS: dict[str, Callable[[list[str]], bytes]] = {
    "jsonl": lambda texts: "\n".join(json.dumps(text) for text in texts).encode(),
    "csv": lambda texts: "\n".join(texts).encode(),
    "npy": _npy,
}


def test_a_batch_job_row_with_a_string_over_the_limit_gets_its_own_error(load: Loader, s3: Any) -> None:
    function = load("batch", MAAS_MAX_STRING_BYTES=str(MAX_STRING_BYTES))
    texts = ["Hello", SECRET + "-and-more", "World"]
    # One job per input format, each in its own folder.
    outcomes: dict[str, dict[str, Any]] = {}
    for input_format, encode in JOB_INPUTS.items():
        folder = f"jobs/{TEXT_MODEL}/strings-{input_format}/"
        submit(s3, f"{folder}input.{input_format}", encode(texts))

        response = function.lambda_handler(job_event(f"{folder}input.{input_format}"), Context())

        lines = read_lines(s3, folder + "output.jsonl")
        status = read_status(s3, folder)
        outcomes[input_format] = {
            "response": response,
            "lowered": [line.get("outputs", {}).get("lowered") for line in (lines[0], lines[2])],
            "line 2": lines[1],
            "status": (status.state, status.counts.succeeded, status.counts.failed),
        }

    expected = {
        "response": {"batchItemFailures": []},
        "lowered": ["hello", "world"],
        "line 2": {"error": "line 2: " + string_too_large("input 'text'", 0, 24)},
        "status": ("succeeded", 2, 1),
    }
    assert outcomes == dict.fromkeys(JOB_INPUTS, expected)


# ---- the time budget (MAAS_REQUEST_TIMEOUT)

BUDGET_ERROR = f"model '{SLOW_MODEL}' v1: inference exceeded the time budget of 0.02 s (MAAS_REQUEST_TIMEOUT)"


def _loaded(function: ModuleType) -> ModuleType:
    # Readiness loads the model, so the budget meets the run rather than the load.
    status, body = answer(function, http_event(f"/v2/models/{SLOW_MODEL}/ready", "", method="GET"))
    assert status == 200, body
    return function


def test_given_an_inference_longer_than_the_budget_then_v2_v1_and_direct_invoke_answer_504_naming_it(
    load: Loader, slow_model: ModelRegistry
) -> None:
    infer = _loaded(load(MAAS_REQUEST_TIMEOUT="0.02"))
    v1_event = http_event(f"/v1/models/{SLOW_MODEL}:predict", json.dumps({"instances": [[0.5] * SLOW_WIDTH]}))

    answers = {
        "v2 infer": answer(infer, http_event(SLOW_INFER, json.dumps(slow_request()))),
        "v1 predict": answer(infer, v1_event),
        "direct invoke": infer.lambda_handler({"model": SLOW_MODEL, **slow_request()}, None),
    }

    assert answers == {
        "v2 infer": (504, {"error": BUDGET_ERROR}),
        "v1 predict": (504, {"error": BUDGET_ERROR}),
        "direct invoke": {"error": BUDGET_ERROR, "status": 504},
    }


def test_given_the_budget_off_then_the_same_model_answers(load: Loader, slow_model: ModelRegistry) -> None:
    infer = _loaded(load(MAAS_REQUEST_TIMEOUT="0"))

    status, body = answer(infer, http_event(SLOW_INFER, json.dumps(slow_request())))

    assert status == 200, body
    np.testing.assert_allclose(body["outputs"][0]["data"], [0.5 * SLOW_WIDTH * SLOW_WIDTH], rtol=1e-3)


def test_given_the_function_has_less_time_left_than_the_budget_then_it_caps_the_budget(
    load: Loader, slow_model: ModelRegistry
) -> None:
    infer = _loaded(load())  # the default budget, 25 s

    # 1.02 s left, less the 1 s kept for answering.
    status, body = answer(infer, http_event(SLOW_INFER, json.dumps(slow_request())), RemainingTime(1020))

    assert status == 504
    assert body["error"].startswith(
        f"model '{SLOW_MODEL}' v1: inference exceeded the 0.02 s the function had left"
    )


def test_a_batch_job_is_held_to_the_functions_deadline_not_the_per_request_budget(
    load: Loader, s3: Any, slow_model: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maas.service import batch_jobs

    # A 20 ms per-request budget must not touch a job; the function's own clock does.
    function = load("batch", MAAS_REQUEST_TIMEOUT="0.02")
    within = f"jobs/{SLOW_MODEL}/budget-2/"
    submit(s3, within + "input.jsonl", json.dumps([0.5] * SLOW_WIDTH).encode())

    function.lambda_handler(job_event(within + "input.jsonl"), Context())

    assert read_status(s3, within).state == "succeeded"
    (line,) = read_lines(s3, within + "output.jsonl")
    np.testing.assert_allclose(line["outputs"]["y"], [0.5 * SLOW_WIDTH * SLOW_WIDTH], rtol=1e-3)

    # With 20 s left the job may start a chunk, and a margin 20 ms short of that leaves the run 20 ms: the
    # run past the function's deadline fails the job, with its reason.
    monkeypatch.setattr(batch_jobs, "RUN_DEADLINE_MARGIN_MS", batch_jobs.DEADLINE_MARGIN_MS - 20)
    past = f"jobs/{SLOW_MODEL}/budget-1/"
    submit(s3, past + "input.jsonl", json.dumps([0.5] * SLOW_WIDTH).encode())

    response = function.lambda_handler(
        job_event(past + "input.jsonl"), Context(batch_jobs.DEADLINE_MARGIN_MS)
    )

    assert response == {"batchItemFailures": []}
    status = read_status(s3, past)
    assert (status.state, status.error) == (
        "failed",
        "job: expected to finish within the function's timeout, got through 0 lines; "
        "split the input into smaller jobs",
    )


def test_the_openapi_document_lists_504_for_inference() -> None:
    paths = openapi_document()["paths"]

    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        assert "504" in paths[path]["post"]["responses"]
    assert "504" in paths["/v1/models/{name}:predict"]["post"]["responses"]
