"""The OpenAI-compatible API through the generate function's real handlers.

Given the tiny test decoder (random weights, SmolLM2's architecture, a 256-token context) published to moto
as tiny-llm, functions/generate/app.py is imported fresh, as Lambda would, and sent the HTTP API events
API Gateway sends. The openai SDK reads the answers through a transport that calls lambda_handler, so its
own parsing of our bodies, event streams included, is part of every SDK test.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tokenizers import Tokenizer

from maas.registry import Manifest, ModelRegistry
from tests.support.events import json_event, load_event
from tests.support.jobs import Context
from tests.support.llm import tiny_hf_folder, tiny_llm_folder
from tests.support.llm_reference import reference_tokens
from tests.support.logs import JsonLogs
from tests.support.models import text_normalizer_model
from tests.support.openai_lambda import DONE, openai_client, sse_data, sse_json

CHAT = "/openai/v1/chat/completions"
COMPLETIONS = "/openai/v1/completions"
MODEL = "tiny-llm"
PROMPT = "The capital of France is"
SECRET = "my passport number is X1234567"
NOT_A_GENERATOR = "lowercase"


@pytest.fixture
def not_a_generator(registry: ModelRegistry) -> Manifest:
    """A string-lowering graph: a model like any other, but one that generates no text."""
    return registry.publish(NOT_A_GENERATOR, *text_normalizer_model())


def post(function: ModuleType, path: str, body: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return function.lambda_handler(json_event("POST", path, body), context)  # type: ignore[no-any-return]


def answered(function: ModuleType, path: str, body: dict[str, Any], context: Any = None) -> dict[str, Any]:
    response = post(function, path, body, context)
    assert response["statusCode"] == 200, response["body"]
    document: dict[str, Any] = json.loads(response["body"])
    return document


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}], **fields}


def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(tiny_llm_folder() / "tokenizer.json"))


# ---- whole answers


def test_a_chat_completion_from_a_real_event_answers_in_openais_shape(generate_function: ModuleType) -> None:
    response = generate_function.lambda_handler(load_event("http_v2_chat_completions.json"), None)

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["x-maas-model-version"] == "1"
    answer = json.loads(response["body"])
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    # The reference said tiny-llm@latest; the answer names the version that answered.
    assert answer["model"] == answer["system_fingerprint"] == "tiny-llm:1"
    [choice] = answer["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 8
    assert answer["maas"] == {"time_budget_exhausted": False}


def test_temperature_zero_is_the_raw_greedy_loop_token_for_token(
    generate_function: ModuleType, published_llm: Manifest, tmp_path: Path
) -> None:
    tokens = tokenizer()
    prompt_ids = tokens.encode(PROMPT, add_special_tokens=False).ids
    reference = reference_tokens(published_llm, tiny_llm_folder(), prompt_ids, 24)

    answer = answered(
        generate_function, COMPLETIONS, {"model": MODEL, "prompt": PROMPT, "max_tokens": 24, "temperature": 0}
    )

    assert answer["usage"]["prompt_tokens"] == len(prompt_ids)
    assert answer["usage"]["completion_tokens"] == len(reference)
    assert answer["choices"][0]["text"] == tokens.decode(reference)


def test_a_chat_at_temperature_zero_continues_the_rendered_template_greedily(
    generate_function: ModuleType, published_llm: Manifest, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tokens = tokenizer()
    # The template rendered by transformers, as the model's own tooling renders it.
    rendered = AutoTokenizer.from_pretrained(tiny_hf_folder()).apply_chat_template(
        [{"role": "user", "content": "Hello there"}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tokens.encode(rendered, add_special_tokens=False).ids
    reference = reference_tokens(published_llm, tiny_llm_folder(), prompt_ids, 16)

    answer = answered(generate_function, CHAT, chat_body(max_tokens=16, temperature=0))

    assert answer["usage"]["prompt_tokens"] == len(prompt_ids)
    assert answer["usage"]["completion_tokens"] == len(reference)
    assert answer["choices"][0]["message"]["content"] == tokens.decode(reference)


def test_max_tokens_5_ends_with_length_and_5_completion_tokens(generate_function: ModuleType) -> None:
    answer = answered(generate_function, CHAT, chat_body(max_tokens=5, temperature=0))

    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 5


def test_max_completion_tokens_is_max_tokens_by_its_newer_name(generate_function: ModuleType) -> None:
    answer = answered(generate_function, CHAT, chat_body(max_completion_tokens=3, temperature=0))

    assert answer["usage"]["completion_tokens"] == 3


def test_the_same_seed_gives_the_same_text_and_each_choice_its_own(generate_function: ModuleType) -> None:
    body = chat_body(max_tokens=12, temperature=1.0, seed=1234, n=2)

    first = answered(generate_function, CHAT, body)
    second = answered(generate_function, CHAT, body)

    texts = [choice["message"]["content"] for choice in first["choices"]]
    assert texts == [choice["message"]["content"] for choice in second["choices"]]
    assert [choice["index"] for choice in first["choices"]] == [0, 1]
    # Each choice draws from its own seed, derived from the request's: n samples, not n copies.
    assert texts[0] != texts[1]
    # Choice 0 draws from the request's seed itself, so n=1 with that seed gives the same text.
    single = answered(generate_function, CHAT, chat_body(max_tokens=12, temperature=1.0, seed=1234))
    assert single["choices"][0]["message"]["content"] == texts[0]
    # The prompt is counted once, however many choices continue it.
    assert first["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"]


def test_a_stop_string_ends_the_text_before_it(generate_function: ModuleType) -> None:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 40, "temperature": 1.0, "seed": 7}
    unstopped = answered(generate_function, COMPLETIONS, body)["choices"][0]["text"]
    # A stop string taken from the middle of what the same seed generates without one.
    stop = unstopped[len(unstopped) // 2 : len(unstopped) // 2 + 2]
    assert stop.strip(), f"expected printable text to cut, got {unstopped!r}"

    stopped = answered(generate_function, COMPLETIONS, {**body, "stop": ["never-generated", stop]})

    [choice] = stopped["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == unstopped[: unstopped.index(stop)]


def test_completions_echo_the_prompt_and_answer_several_prompts_in_order(
    generate_function: ModuleType,
) -> None:
    body = {
        "model": MODEL,
        "prompt": [PROMPT, "Zürich"],
        "n": 2,
        "max_tokens": 4,
        "temperature": 0,
        "echo": True,
    }

    answer = answered(generate_function, COMPLETIONS, body)

    assert answer["object"] == "text_completion"
    assert [choice["index"] for choice in answer["choices"]] == [0, 1, 2, 3]
    assert [choice["text"].startswith(PROMPT) for choice in answer["choices"]] == [True, True, False, False]
    assert all(choice["text"].startswith("Zürich") for choice in answer["choices"][2:])
    assert answer["usage"]["completion_tokens"] == 16


def test_logprobs_report_each_token_and_its_alternatives(generate_function: ModuleType) -> None:
    chat = answered(
        generate_function, CHAT, chat_body(max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    )
    completion = answered(
        generate_function,
        COMPLETIONS,
        {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "temperature": 0, "logprobs": 2},
    )

    content = chat["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    for token in content:
        assert token["logprob"] <= 0
        assert len(token["top_logprobs"]) == 3
        # Greedy: the token taken is the most likely one.
        assert token["logprob"] == pytest.approx(token["top_logprobs"][0]["logprob"])
    logprobs = completion["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == len(logprobs["text_offset"]) == 4
    assert all(len(alternatives) <= 2 for alternatives in logprobs["top_logprobs"])
    assert logprobs["text_offset"][0] == 0


# ---- event streams


def test_stream_true_answers_the_whole_event_stream_at_once(generate_function: ModuleType) -> None:
    body = chat_body(max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True})

    response = post(generate_function, CHAT, body)

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/event-stream"
    assert response["headers"]["Cache-Control"] == "no-cache"
    assert sse_data(response["body"])[-1] == DONE
    chunks = sse_json(response["body"])
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 6
    whole = answered(generate_function, CHAT, chat_body(max_tokens=6, temperature=0))
    streamed = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1])
    assert streamed == whole["choices"][0]["message"]["content"]


def test_stream_handler_sends_status_and_headers_then_one_chunk_per_event(
    generate_function: ModuleType,
) -> None:
    body = chat_body(max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True})
    whole = post(generate_function, CHAT, body)

    stream = generate_function.stream_handler(json_event("POST", CHAT, body), None)

    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    chunks = list(stream.chunks)
    assert all(chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") for chunk in chunks)
    assert chunks[-1] == b"data: [DONE]\n\n"
    # The same events as the whole answer, but for the ids and timestamps each request gets.
    streamed = [{**c, "id": "", "created": 0} for c in sse_json(b"".join(chunks))]
    assert streamed == [{**c, "id": "", "created": 0} for c in sse_json(whole["body"])]


def test_stream_handler_refuses_before_the_first_byte_with_a_status(generate_function: ModuleType) -> None:
    stream = generate_function.stream_handler(
        json_event("POST", CHAT, chat_body(stream=True, temperature=9)), None
    )

    assert stream.status == 400
    assert stream.headers["Content-Type"] == "application/json"
    error = json.loads(b"".join(stream.chunks))["error"]
    assert error["param"] == "temperature"


def test_stream_handler_answers_a_request_that_does_not_stream_as_one_chunk(
    generate_function: ModuleType,
) -> None:
    stream = generate_function.stream_handler(json_event("POST", CHAT, chat_body(max_tokens=2)), None)

    assert stream.status == 200
    [chunk] = list(stream.chunks)
    assert json.loads(chunk)["object"] == "chat.completion"


def test_a_stream_abandoned_by_its_client_stops_generating(
    generate_function: ModuleType, json_logs: JsonLogs
) -> None:
    body = chat_body(max_tokens=50, temperature=0, stream=True, n=2)
    stream = generate_function.stream_handler(json_event("POST", CHAT, body), None)
    chunks = iter(stream.chunks)

    first = next(chunks)
    chunks.close()

    assert b'"role":"assistant"' in first
    [line] = [line for line in json_logs.lines() if line["message"].startswith("generation ")]
    assert line["message"] == "generation abandoned"
    assert line["finished_choices"] == 0


# ---- the openai SDK


def test_the_openai_sdk_reads_chats_whole_and_streamed(generate_function: ModuleType) -> None:
    client = openai_client(generate_function.lambda_handler)
    messages: Any = [{"role": "user", "content": "What is the capital of France?"}]

    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert whole.model == "tiny-llm:1"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.model_extra == {"maas": {"time_budget_exhausted": False}}
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None and whole.usage is not None
    assert usage.model_dump() == whole.usage.model_dump()


def test_the_openai_sdk_reads_completions_models_and_seeded_samples(generate_function: ModuleType) -> None:
    client = openai_client(generate_function.lambda_handler)

    first = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, seed=5, temperature=1.0)
    again = client.completions.create(
        model=f"{MODEL}:1", prompt=PROMPT, max_tokens=6, seed=5, temperature=1.0
    )
    streamed = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, seed=5, stream=True))
    models = client.models.list()

    assert first.choices[0].text == again.choices[0].text
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == first.choices[0].text
    assert [model.id for model in models.data] == [MODEL]
    assert client.models.retrieve(f"{MODEL}@latest").id == f"{MODEL}@latest"


def test_the_openai_sdk_raises_bad_request_in_openais_error_shape(generate_function: ModuleType) -> None:
    import openai

    client = openai_client(generate_function.lambda_handler)

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], top_p=0)

    error = raised.value
    assert error.status_code == 400
    assert error.param == "top_p"
    assert error.type == "invalid_request_error"
    assert "top_p: expected a number above 0 and at most 1, got 0" in error.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"


# ---- models


def test_models_lists_text_generators_only_and_retrieves_any_reference(
    generate_function: ModuleType, not_a_generator: Manifest
) -> None:
    listed = generate_function.lambda_handler(json_event("GET", "/openai/v1/models", None), None)
    assert json.loads(listed["body"])["data"][0]["id"] == MODEL
    assert [model["id"] for model in json.loads(listed["body"])["data"]] == [MODEL]

    for reference, path in ((f"{MODEL}:1", f"{MODEL}:1"), (f"{MODEL}@latest", f"{MODEL}%40latest")):
        response = generate_function.lambda_handler(
            json_event("GET", f"/openai/v1/models/{path}", None), None
        )
        assert response["statusCode"] == 200
        assert json.loads(response["body"]) == {
            "id": reference,
            "object": "model",
            "created": json.loads(listed["body"])["data"][0]["created"],
            "owned_by": "maas",
        }
    other = generate_function.lambda_handler(
        json_event("GET", f"/openai/v1/models/{NOT_A_GENERATOR}", None), None
    )
    assert other["statusCode"] == 404
    assert json.loads(other["body"])["error"]["message"] == "model 'lowercase': not a text-generation model"


# ---- the time budget and the logs


def test_the_time_budget_ends_generation_with_length_and_says_so(
    generate_function: ModuleType, json_logs: JsonLogs
) -> None:
    # Half a second left is less than the margin the answer keeps for itself: the budget is already spent.
    answer = answered(
        generate_function, CHAT, chat_body(max_tokens=20, temperature=0), Context(remaining_ms=500)
    )

    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["maas"] == {"time_budget_exhausted": True}
    [line] = [
        line for line in json_logs.lines() if line["message"] == "generation stopped at its time budget"
    ]
    assert line["level"] == "WARNING"
    assert line["time_budget_exhausted"] is True
    assert line["completion_tokens"] == answer["usage"]["completion_tokens"]


def test_prompts_and_completions_are_never_logged(generate_function: ModuleType, json_logs: JsonLogs) -> None:
    answer = answered(
        generate_function,
        CHAT,
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": SECRET}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    post(generate_function, CHAT, {"model": MODEL, "messages": [{"role": "wizard", "content": SECRET}]})

    completion = answer["choices"][0]["message"]["content"]
    [line] = [line for line in json_logs.lines() if line["message"] == "generation finished"]
    assert line["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert "time_to_first_token_ms" in line
    assert SECRET not in json_logs.text
    assert "X1234567" not in json_logs.text
    if completion.strip():
        assert json.dumps(completion)[1:-1] not in json_logs.text
