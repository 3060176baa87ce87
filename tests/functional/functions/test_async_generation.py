"""Chat completions and completions through the async function as Lambda runs it: real SQS events whose
bodies carry "messages" or "prompt", answered in results/<id>.json with the OpenAI response object, beside
V2 requests. The tiny test decoder is published as tiny-llm v1, and a string-lowering graph as lowercase,
a model like any other that generates no text.
"""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import Any

import pytest

from maas.protocol.openai_types import ChatCompletionRequest, CompletionRequest
from maas.registry import Manifest, ModelRegistry
from maas.service.completions import CompletionService
from tests.support.functions import start_function
from tests.support.jobs import Context
from tests.support.logs import JsonLogs
from tests.support.models import text_normalizer_model
from tests.support.queues import record, result, stored_versions

MODEL = "tiny-llm"
NOT_A_GENERATOR = "lowercase"
SECRET = "my passport number is X1234567"
CHAT: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    "max_tokens": 6,
    "temperature": 0,
}
COMPLETION: dict[str, Any] = {
    "model": f"{MODEL}@latest",
    "prompt": "Once upon a time",
    "max_tokens": 5,
    "seed": 7,
}


@pytest.fixture
def llm_async_function(
    monkeypatch: pytest.MonkeyPatch, s3: Any, registry: ModelRegistry, published_llm: Manifest
) -> ModuleType:
    registry.publish(NOT_A_GENERATOR, *text_normalizer_model())
    return start_function(monkeypatch, "async", MAAS_INTRA_OP_THREADS="1")


def without_run_fields(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in ("id", "created")}


def test_an_async_chat_request_is_answered_with_the_chat_completion_the_service_gives(
    llm_async_function: ModuleType, s3: Any
) -> None:
    event = {"Records": [record({**CHAT, "id": "chat-1"}, "m-chat")]}

    response = llm_async_function.lambda_handler(event, Context())

    assert response == {"batchItemFailures": []}
    answer = result(s3, "chat-1")
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert answer["model"] == f"{MODEL}:1"
    [choice] = answer["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] <= CHAT["max_tokens"]
    expected = CompletionService.from_settings().chat(ChatCompletionRequest.model_validate(CHAT)).response()
    assert without_run_fields(answer) == without_run_fields(json.loads(expected.model_dump_json()))


def test_an_async_completion_is_answered_with_the_completion_the_service_gives(
    llm_async_function: ModuleType, s3: Any
) -> None:
    llm_async_function.lambda_handler({"Records": [record(COMPLETION, "m-completion")]}, None)

    answer = result(s3, "m-completion")  # no "id": the message id names the result
    assert answer["object"] == "text_completion"
    expected = CompletionService.from_settings().complete(CompletionRequest.model_validate(COMPLETION))
    assert without_run_fields(answer) == without_run_fields(json.loads(expected.response().model_dump_json()))


def test_v2_requests_and_chats_share_one_batch(llm_async_function: ModuleType, s3: Any) -> None:
    v2 = {
        "model": NOT_A_GENERATOR,
        "id": "v2-1",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["HeLLo", "WORLD"]}],
    }

    response = llm_async_function.lambda_handler(
        {"Records": [record(v2, "m-v2"), record({**CHAT, "id": "chat-2"}, "m-chat-2")]}, None
    )

    assert response == {"batchItemFailures": []}
    lowered = next(output for output in result(s3, "v2-1")["outputs"] if output["name"] == "lowered")
    assert lowered["data"] == ["hello", "world"]
    assert result(s3, "chat-2")["object"] == "chat.completion"


# Bodies a client got wrong (id: (body, status, the start of the error)), sent in one batch as SQS does.
BAD_BODIES: dict[str, tuple[dict[str, Any], int, str]] = {
    "both-kinds": (
        {**CHAT, "prompt": "and a prompt"},
        400,
        "message: expected either 'messages' (a chat completion) or 'prompt' (a completion), got both",
    ),
    "v2-and-chat": (
        {**CHAT, "inputs": []},
        400,
        "message: expected one of 'inputs' (a V2 request), 'messages' (a chat completion) or 'prompt' "
        "(a completion), got more than one",
    ),
    "no-kind": (
        {"model": MODEL, "max_tokens": 4},
        400,
        "message: expected one of 'inputs' (a V2 request), 'messages' (a chat completion) or 'prompt' "
        "(a completion), got none",
    ),
    "stream": (
        {**CHAT, "stream": True},
        400,
        "stream: expected false or none, as the answer is written whole",
    ),
    "temperature": ({**CHAT, "temperature": 5}, 400, "temperature: expected a number from 0 to 2, got 5"),
    "no-messages": ({**CHAT, "messages": []}, 400, "messages: expected at least one message, got none"),
    "role": (
        {**CHAT, "messages": [{"role": "wizard", "content": "Hi"}]},
        400,
        "messages[0].role: expected system, developer, user or assistant, got 'wizard'",
    ),
    "model-null": ({**CHAT, "model": None}, 400, "model: input should be a valid string, got null"),
    "model-missing": ({"prompt": "Hi"}, 400, "model: required field is missing"),
    "unknown-model": ({**CHAT, "model": "no-such-model"}, 404, "model 'no-such-model': not found"),
    "not-a-generator": (
        {**CHAT, "model": NOT_A_GENERATOR},
        400,
        f"model: expected a text-generation model, got '{NOT_A_GENERATOR}'",
    ),
    "token-ids": (
        {**COMPLETION, "prompt": [1, 2, 3]},
        400,
        "prompt: expected a string or a list of strings, got token ids",
    ),
    "over-the-context": ({**COMPLETION, "max_tokens": 100_000}, 400, "max_tokens: expected at most"),
    "unknown-field": ({**CHAT, "operation": "explain"}, 400, "operation: unknown field"),
}


def test_a_bad_chat_or_completion_gets_an_error_result_and_is_not_retried(
    llm_async_function: ModuleType, s3: Any
) -> None:
    records = [record({**body, "id": name}, f"m-{name}") for name, (body, _, _) in BAD_BODIES.items()]

    response = llm_async_function.lambda_handler({"Records": records}, None)

    assert response == {"batchItemFailures": []}
    for name, (_, status, error) in BAD_BODIES.items():
        answer = result(s3, name)
        assert (answer["id"], answer["status"]) == (name, status), answer
        assert answer["error"].startswith(error), (name, answer["error"])


def test_the_same_chat_message_twice_leaves_one_result(llm_async_function: ModuleType, s3: Any) -> None:
    event = {"Records": [record({**CHAT, "id": "chat-dup"}, "m-dup")]}

    llm_async_function.lambda_handler(event, None)
    written = stored_versions(s3, "results/")
    llm_async_function.lambda_handler(copy.deepcopy(event), None)

    assert [key for key, _ in written] == ["results/chat-dup.json"]
    assert stored_versions(s3, "results/") == written


def test_a_chat_is_held_to_the_functions_remaining_time(llm_async_function: ModuleType, s3: Any) -> None:
    # Less than the one second the service keeps for the answer's tail: no token fits.
    event = {"Records": [record({**CHAT, "id": "chat-late"}, "m-late")]}

    llm_async_function.lambda_handler(event, Context(remaining_ms=500))

    answer = result(s3, "chat-late")
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 0
    assert answer["maas"] == {"time_budget_exhausted": True}


def test_chats_and_their_answers_never_reach_the_logs(
    llm_async_function: ModuleType, s3: Any, capsys: pytest.CaptureFixture[str], json_logs: JsonLogs
) -> None:
    good = {**CHAT, "id": "private-1", "messages": [{"role": "user", "content": SECRET}]}
    bad = {**good, "id": "private-2", "messages": [{"role": "wizard", "content": SECRET}]}

    llm_async_function.lambda_handler({"Records": [record(good, "p1"), record(bad, "p2")]}, None)

    assert result(s3, "private-1")["object"] == "chat.completion"
    assert result(s3, "private-2")["status"] == 400
    captured = capsys.readouterr()
    assert "generation finished" in json_logs.text
    assert "async request answered with an error" in json_logs.text
    assert "X1234567" not in captured.out + captured.err + json_logs.text
