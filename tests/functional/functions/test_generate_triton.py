"""Triton's generate extension through the generate function's real handlers: /generate answers one JSON
object, /generate_stream one Server-Sent Event per decoded piece, for a model named by path as V2 names it.

Given the tiny test decoder published to moto as tiny-llm v1, the function is imported fresh and sent the
HTTP API events API Gateway sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tokenizers import Tokenizer

from maas.registry import Manifest
from tests.support.events import json_event, load_event
from tests.support.llm import tiny_llm_folder
from tests.support.llm_reference import reference_tokens
from tests.support.openai_lambda import sse_data, sse_json

PROMPT = "The capital of France is"
GREEDY = {"text_input": PROMPT, "parameters": {"max_tokens": 8, "temperature": 0}}


def answered(function: ModuleType, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = function.lambda_handler(json_event("POST", path, body), None)
    assert response["statusCode"] == 200, response["body"]
    document: dict[str, Any] = json.loads(response["body"])
    return document


def test_generate_from_a_real_event_is_the_raw_greedy_loop(
    generate_function: ModuleType, published_llm: Manifest, tmp_path: Path
) -> None:
    tokens = Tokenizer.from_file(str(tiny_llm_folder() / "tokenizer.json"))
    prompt_ids = tokens.encode(PROMPT, add_special_tokens=False).ids
    reference = reference_tokens(published_llm, tiny_llm_folder(), prompt_ids, 8)

    response = generate_function.lambda_handler(load_event("http_v2_generate.json"), None)

    assert response["statusCode"] == 200
    assert response["headers"]["x-maas-model-version"] == "1"
    answer = json.loads(response["body"])
    assert answer == {
        "model_name": "tiny-llm",
        "model_version": "1",
        "text_output": tokens.decode(reference),
        "finish_reason": "length" if len(reference) == 8 else "stop",
        "prompt_tokens": len(prompt_ids),
        "completion_tokens": len(reference),
        "time_budget_exhausted": False,
    }


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/tiny-llm/versions/1/generate",
        "/v2/models/tiny-llm/versions/latest/generate",
        "/v2/models/tiny-llm%40latest/generate",
    ],
)
def test_a_version_or_alias_in_the_path_selects_the_model(generate_function: ModuleType, path: str) -> None:
    pinned = answered(generate_function, path, {**GREEDY, "id": "req-7"})
    plain = answered(generate_function, "/v2/models/tiny-llm/generate", GREEDY)

    assert pinned["id"] == "req-7"
    assert pinned["model_version"] == "1"
    assert pinned["text_output"] == plain["text_output"]


def test_generate_stream_sends_one_event_per_piece_then_why_it_ended(generate_function: ModuleType) -> None:
    whole = answered(generate_function, "/v2/models/tiny-llm/generate", GREEDY)

    response = generate_function.lambda_handler(
        json_event("POST", "/v2/models/tiny-llm/generate_stream", GREEDY), None
    )

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/event-stream"
    events = sse_json(response["body"])
    # Triton's generate_stream has no [DONE] sentinel: the stream ends with the event that says why.
    assert "[DONE]" not in sse_data(response["body"])
    *pieces, last = events
    assert all(set(piece) == {"model_name", "model_version", "text_output"} for piece in pieces)
    assert "".join(piece["text_output"] for piece in pieces) == whole["text_output"]
    assert last == {**whole, "text_output": ""}


def test_generate_stream_through_the_stream_handler_sends_the_same_events(
    generate_function: ModuleType,
) -> None:
    event = json_event("POST", "/v2/models/tiny-llm/versions/1/generate_stream", GREEDY)
    whole = generate_function.lambda_handler(event, None)

    stream = generate_function.stream_handler(event, None)

    assert stream.status == 200
    assert stream.headers["x-maas-model-version"] == "1"
    chunks = list(stream.chunks)
    assert len(chunks) == len(sse_data(whole["body"]))
    assert b"".join(chunks).decode() == whole["body"]


def test_generate_with_a_seed_samples_the_same_text_twice(generate_function: ModuleType) -> None:
    body = {
        "text_input": PROMPT,
        "parameters": {"max_tokens": 10, "temperature": 1.0, "top_k": 50, "seed": 3},
    }

    first = answered(generate_function, "/v2/models/tiny-llm/generate", body)
    second = answered(generate_function, "/v2/models/tiny-llm/generate", body)

    assert first["text_output"] == second["text_output"]
