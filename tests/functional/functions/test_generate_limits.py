"""Every request the generate function refuses, refused as a 4xx that names the field, never a hang or a 5xx.

Given the tiny test decoder (a 256-token context) published to moto, each bad request goes through the real
handler as an HTTP API event. Under /openai/v1 the answer is OpenAI's error shape with `param` naming the
field; on Triton's generate routes it is maas's {"error": "..."}. Payload text is never quoted back.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.registry import Manifest, ModelRegistry
from tests.support.events import http_event, json_event
from tests.support.functions import start_function
from tests.support.models import text_normalizer_model

CHAT = "/openai/v1/chat/completions"
COMPLETIONS = "/openai/v1/completions"
GENERATE = "/v2/models/tiny-llm/generate"
MODEL = "tiny-llm"
HELLO = [{"role": "user", "content": "Hello"}]
# Far more than the tiny decoder's 256-token context, whatever its tokenizer makes of it.
LONG_TEXT = "words and more words, " * 200


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": HELLO, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Hello", **fields}


def openai_error(response: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(response["body"])
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# (path, body, param, what the message says after "<param>: ")
OPENAI_REFUSALS = [
    (CHAT, chat(temperature=2.5), "temperature", "expected a number from 0 to 2, got 2.5"),
    (CHAT, chat(temperature=-0.1), "temperature", "expected a number from 0 to 2, got -0.1"),
    (CHAT, chat(temperature="hot"), "temperature", "input should be a valid number, got string"),
    (CHAT, chat(top_p=0), "top_p", "expected a number above 0 and at most 1, got 0"),
    (CHAT, chat(top_p=1.5), "top_p", "expected a number above 0 and at most 1, got 1.5"),
    (CHAT, chat(top_k=-1), "top_k", "expected 0 (no cut) or more, got -1"),
    (CHAT, chat(n=5), "n", "expected 1 to 4 choices (MAAS_MAX_CHOICES), got 5"),
    (CHAT, chat(n=0), "n", "expected 1 to 4 choices (MAAS_MAX_CHOICES), got 0"),
    (CHAT, chat(stop=["a", "b", "c", "d", "e"]), "stop", "expected at most 4 strings, got 5"),
    (CHAT, chat(stop=["a", ""]), "stop[1]", "expected a non-empty string, got an empty one"),
    (CHAT, chat(seed=2**64), "seed", "expected a 64-bit signed integer, got a larger one"),
    (CHAT, chat(max_tokens=0), "max_tokens", "expected at least 1, got 0"),
    (CHAT, chat(max_tokens=3, max_completion_tokens=4), "max_completion_tokens", "expected the same as"),
    (CHAT, chat(top_logprobs=3), "top_logprobs", "expected only with logprobs true"),
    (CHAT, chat(logprobs=True, top_logprobs=21), "top_logprobs", "expected 0 to 20, got 21"),
    (CHAT, chat(frequency_penalty=0.5), "frequency_penalty", "expected 0 or none, as maas's sampler"),
    (CHAT, chat(presence_penalty=-1), "presence_penalty", "expected 0 or none, as maas's sampler"),
    (CHAT, chat(logit_bias={"5": 10}), "logit_bias", "expected an empty object or none"),
    (CHAT, chat(tools=[{"type": "function", "function": {"name": "f"}}]), "tools", "expected none, as"),
    (CHAT, chat(tool_choice="required"), "tool_choice", "expected none or auto"),
    (CHAT, chat(response_format={"type": "json_object"}), "response_format.type", "expected text"),
    (CHAT, chat(modalities=["text", "audio"]), "modalities", 'expected ["text"]'),
    (CHAT, chat(repetition_penalty=1.1), "repetition_penalty", "unknown field"),
    (CHAT, chat(model="Not A Model!"), "model", "expected a model reference (name, name@alias, name:version"),
    (CHAT, chat(model="tiny-llm:"), "model", "expected a model reference"),
    (CHAT, chat(messages=[]), "messages", "expected at least one message, got none"),
    (CHAT, chat(messages="Hello"), "messages", "input should be a valid array, got string"),
    (CHAT, chat(messages=[{"content": "Hello"}]), "messages[0].role", "required field is missing"),
    (
        CHAT,
        chat(messages=[{"role": "wizard", "content": "x"}]),
        "messages[0].role",
        "expected system, developer",
    ),
    (
        CHAT,
        chat(messages=[{"role": "tool", "content": "x"}]),
        "messages[0].role",
        "expected system, developer",
    ),
    (
        CHAT,
        chat(messages=[{"role": "user"}]),
        "messages[0].content",
        "expected a string or a list of text parts",
    ),
    (
        CHAT,
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "messages[0].content[0].type",
        "expected text, as maas serves text only, got 'image_url'",
    ),
    (
        CHAT,
        chat(messages=[{"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}]),
        "messages[0].tool_calls",
        "expected none",
    ),
    (
        CHAT,
        chat(messages=[{"role": "user", "content": LONG_TEXT}]),
        "messages",
        "expected at most 255 tokens",
    ),
    (CHAT, chat(max_tokens=1000), "max_tokens", "expected at most "),
    (
        COMPLETIONS,
        completion(prompt=[1, 2, 3]),
        "prompt",
        "expected a string or a list of strings, got token ids",
    ),
    (COMPLETIONS, completion(prompt=[]), "prompt", "expected a string or at least one string"),
    (COMPLETIONS, completion(prompt=""), "prompt", "expected at least one token, got an empty prompt"),
    (COMPLETIONS, completion(prompt=["a", LONG_TEXT]), "prompt[1]", "expected at most 255 tokens"),
    (COMPLETIONS, completion(prompt=["a", "b", "c"], n=2), "prompt", "expected at most 4 choices in all"),
    (COMPLETIONS, completion(echo=True, logprobs=1), "echo", "expected false with logprobs"),
    (COMPLETIONS, completion(suffix="!"), "suffix", "expected none, as maas does not insert text"),
    (COMPLETIONS, completion(best_of=3), "best_of", "expected n (1) or none"),
    (COMPLETIONS, completion(logprobs=21), "logprobs", "expected 0 to 20, got 21"),
]


@pytest.mark.parametrize(
    ("path", "body", "param", "says"),
    OPENAI_REFUSALS,
    ids=[f"{case[2]}-{i}" for i, case in enumerate(OPENAI_REFUSALS)],
)
def test_openai_refusals_name_the_field_in_openais_shape(
    generate_function: ModuleType, path: str, body: dict[str, Any], param: str, says: str
) -> None:
    response = generate_function.lambda_handler(json_event("POST", path, body), None)

    assert response["statusCode"] == 400
    error = openai_error(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{param}: {says}"), error["message"]
    assert "words and more" not in error["message"]


def test_a_prompt_over_the_context_is_told_its_token_count_and_the_limit(
    generate_function: ModuleType,
) -> None:
    response = generate_function.lambda_handler(
        json_event("POST", COMPLETIONS, completion(prompt=LONG_TEXT)), None
    )

    message = openai_error(response)["message"]
    count = int(message.rsplit("got ", 1)[1])
    assert count > 256
    assert message == (
        f"prompt: expected at most 255 tokens (the model's context of 256 less one to generate), got {count}"
    )


def test_max_tokens_beyond_what_the_context_leaves_says_how_much_it_leaves(
    generate_function: ModuleType,
) -> None:
    fits = generate_function.lambda_handler(json_event("POST", COMPLETIONS, completion(max_tokens=1)), None)
    prompt_tokens = json.loads(fits["body"])["usage"]["prompt_tokens"]

    response = generate_function.lambda_handler(
        json_event("POST", COMPLETIONS, completion(max_tokens=256)), None
    )

    assert openai_error(response)["message"] == (
        f"max_tokens: expected at most {256 - prompt_tokens} (the model's context of 256 less the prompt's "
        f"{prompt_tokens} tokens), got 256"
    )


def test_penalties_and_fields_at_openais_defaults_are_accepted(generate_function: ModuleType) -> None:
    body = chat(
        max_tokens=2,
        frequency_penalty=0,
        presence_penalty=0.0,
        logit_bias={},
        user="client-7",
        tools=[],
        tool_choice="none",
        response_format={"type": "text"},
        store=False,
        metadata={"team": "a"},
        stream_options={"include_usage": True},
        messages=[{"role": "developer", "content": [{"type": "text", "text": "Be terse."}]}, *HELLO],
    )

    response = generate_function.lambda_handler(json_event("POST", CHAT, body), None)

    assert response["statusCode"] == 200, response["body"]


# ---- what the transport refuses, in OpenAI's shape under /openai/v1


def test_invalid_json_and_non_utf8_bodies_are_400s(generate_function: ModuleType) -> None:
    invalid = generate_function.lambda_handler(
        http_event("POST", CHAT, "{", headers={"content-type": "application/json"}), None
    )
    surrogate = http_event(
        "POST",
        CHAT,
        '{"model":"tiny-llm","messages":[{"role":"user","content":"\\ud800"}]}',
        headers={"content-type": "application/json"},
    )
    not_utf8 = http_event(
        "POST",
        CHAT,
        b'{"model":"tiny-llm","prompt":"\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert not_utf8["isBase64Encoded"] is True

    assert invalid["statusCode"] == 400
    assert openai_error(invalid)["message"].startswith("request body: expected JSON, got invalid JSON")
    assert openai_error(invalid)["param"] is None
    answer = generate_function.lambda_handler(surrogate, None)
    assert answer["statusCode"] == 400
    assert "invalid JSON" in openai_error(answer)["message"]
    answer = generate_function.lambda_handler(not_utf8, None)
    assert answer["statusCode"] == 400
    assert openai_error(answer) == {
        "message": "body: expected UTF-8 JSON, got bytes that are not UTF-8",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_unknown_routes_methods_and_media_types_answer_in_openais_shape(
    generate_function: ModuleType,
) -> None:
    unknown = generate_function.lambda_handler(
        json_event("POST", "/openai/v1/embeddings", {"input": "x"}), None
    )
    wrong_method = generate_function.lambda_handler(json_event("GET", CHAT, None), None)
    media = generate_function.lambda_handler(
        http_event("POST", CHAT, "x", headers={"content-type": "image/png"}), None
    )

    assert unknown["statusCode"] == 404
    assert openai_error(unknown)["message"].startswith("route: expected an OpenAI-compatible route")
    assert wrong_method["statusCode"] == 405
    assert wrong_method["headers"]["Allow"] == "POST"
    assert (
        openai_error(wrong_method)["message"]
        == "method: expected POST for /openai/v1/chat/completions, got GET"
    )
    assert media["statusCode"] == 415
    assert openai_error(media)["message"].startswith("Content-Type: expected application/json")


def test_a_body_over_the_limit_is_413_in_openais_shape(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest
) -> None:
    function = start_function(monkeypatch, "generate", MAAS_MAX_REQUEST_BYTES="256")

    response = function.lambda_handler(
        json_event("POST", CHAT, chat(messages=[{"role": "user", "content": LONG_TEXT}])), None
    )

    assert response["statusCode"] == 413
    assert openai_error(response)["message"].startswith(
        "body: expected at most 256 bytes (MAAS_MAX_REQUEST_BYTES)"
    )


def test_n_is_capped_by_its_setting(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest
) -> None:
    function = start_function(monkeypatch, "generate", MAAS_MAX_CHOICES="2")

    response = function.lambda_handler(json_event("POST", CHAT, chat(n=3)), None)

    assert openai_error(response)["message"] == "n: expected 1 to 2 choices (MAAS_MAX_CHOICES), got 3"


def test_models_that_generate_no_text_or_do_not_exist_are_refused(
    generate_function: ModuleType, registry: ModelRegistry
) -> None:
    registry.publish("lowercase", *text_normalizer_model())

    other = generate_function.lambda_handler(json_event("POST", CHAT, chat(model="lowercase")), None)
    missing = generate_function.lambda_handler(json_event("POST", CHAT, chat(model="no-such-llm")), None)
    unpinned = generate_function.lambda_handler(json_event("POST", CHAT, chat(model="tiny-llm:2")), None)

    assert other["statusCode"] == 400
    assert openai_error(other)["message"] == (
        "model: expected a text-generation model, got 'lowercase' version 1, whose task is text-normalization"
    )
    assert missing["statusCode"] == 404
    assert openai_error(missing)["code"] == "model_not_found"
    assert unpinned["statusCode"] == 404
    assert openai_error(unpinned)["message"] == "model 'tiny-llm' version 2: not found"


# ---- Triton's generate routes keep maas's error shape


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"text_input": "x", "parameters": {"temperature": 3}},
            "parameters.temperature: expected a number from 0 to 2, got 3",
        ),
        (
            {"text_input": "x", "parameters": {"stream": True}},
            "parameters.stream: expected false or none here",
        ),
        ({"text_input": "x", "parameters": {"beam_width": 2}}, "parameters.beam_width: unknown field"),
        (
            {"text_input": "x", "parameters": {"stop": ["a"] * 5}},
            "parameters.stop: expected at most 4 strings, got 5",
        ),
        ({"parameters": {}}, "text_input: required field is missing"),
        ({"text_input": ""}, "text_input: expected at least one token, got an empty prompt"),
        ({"text_input": LONG_TEXT}, "text_input: expected at most 255 tokens"),
        ({"text_input": "x", "parameters": {"max_tokens": 300}}, "max_tokens: expected at most "),
    ],
)
def test_generate_refusals_keep_maas_error_shape(
    generate_function: ModuleType, body: dict[str, Any], message: str
) -> None:
    response = generate_function.lambda_handler(json_event("POST", GENERATE, body), None)

    assert response["statusCode"] == 400
    answer = json.loads(response["body"])
    assert set(answer) == {"error"}
    assert answer["error"].startswith(message), answer["error"]


def test_a_generate_stream_refused_before_its_first_byte_is_an_ordinary_error(
    generate_function: ModuleType,
) -> None:
    event = json_event("POST", f"{GENERATE}_stream", {"text_input": "x", "parameters": {"top_p": 0}})

    whole = generate_function.lambda_handler(event, None)
    stream = generate_function.stream_handler(event, None)

    assert whole["statusCode"] == stream.status == 400
    assert json.loads(b"".join(stream.chunks)) == json.loads(whole["body"])


def test_an_event_that_is_no_http_request_is_refused(generate_function: ModuleType) -> None:
    with pytest.raises(InvalidInput, match=r"^event: expected an API Gateway or Function URL request$"):
        generate_function.lambda_handler({"id": "direct-1", "model": MODEL, "prompt": "x"}, None)
