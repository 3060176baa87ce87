"""Acceptance: the openai Python SDK against the local stack over real HTTP, `base_url=<stack>/openai/v1`.

Given the tiny test decoder (SmolLM2's architecture, random weights, a 256-token context) published as
tiny-llm v1 into the stack's embedded store, every request goes through template.yaml's routes, the local
gateway (streamed routes chunk by chunk) and the generate function, and the SDK parses what comes back:
whole answers, event streams and OpenAI-shaped errors. Temperature 0 is held to the raw onnxruntime greedy
loop over the published folder, and the prompt token count to the model's template rendered by jinja2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from openai.types.chat import ChatCompletionMessageParam
from tokenizers import Tokenizer

from maas.local import LocalStack
from maas.registry import Manifest
from tests.support.http import send
from tests.support.llm import TINY_LLM_NAME, publish_tiny_llm, tiny_llm_folder
from tests.support.llm_reference import reference_tokens

MODEL = TINY_LLM_NAME
QUESTION_TEXT = "What is the capital of France?"
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION_TEXT}]
JSON = "application/json"
# Far more than the tiny decoder's 256-token context, whatever its tokenizer makes of it.
LONG_TEXT = "words and more words, " * 200


@dataclass(frozen=True)
class Served:
    stack: LocalStack
    manifest: Manifest
    client: openai.OpenAI

    @property
    def chat_url(self) -> str:
        return f"{self.stack.url}/openai/v1/chat/completions"


@pytest.fixture(scope="module")
def served(isolated_module_env: pytest.MonkeyPatch) -> Iterator[Served]:
    with LocalStack(port=0, embedded=True) as stack:
        manifest = publish_tiny_llm(stack.registry)
        client = openai.OpenAI(base_url=f"{stack.url}/openai/v1", api_key="unused", max_retries=0)
        with client:
            yield Served(stack, manifest, client)


@pytest.fixture(scope="module")
def question_ids() -> list[int]:
    """The question in the model's own chat template, rendered by jinja2's sandbox as transformers renders
    it (not by maas), in token ids."""
    template = (tiny_llm_folder() / "chat_template.jinja").read_text(encoding="utf-8")
    rendered = (
        ImmutableSandboxedEnvironment()
        .from_string(template)
        .render(messages=[{"role": "user", "content": QUESTION_TEXT}], add_generation_prompt=True)
    )
    return tokenizer().encode(rendered, add_special_tokens=False).ids


def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(tiny_llm_folder() / "tokenizer.json"))


def greedy(served: Served, max_tokens: int) -> str:
    answer = served.client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=max_tokens, temperature=0
    )
    return answer.choices[0].message.content or ""


# ---- chats, whole and streamed


def test_a_chat_answers_whole_naming_the_version(served: Served) -> None:
    answer = served.client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=6)

    assert answer.object == "chat.completion"
    assert answer.model == answer.system_fingerprint == f"{MODEL}:1"
    [choice] = answer.choices
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_streamed_chat_is_the_whole_answer_in_chunks_then_its_usage(
    served: Served, question_ids: list[int]
) -> None:
    whole = served.client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=12, temperature=0
    )
    stream = served.client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    *text_chunks, usage_chunk = chunks
    assert len(text_chunks) > 2, "expected the text in several chunks"
    assert all(len(chunk.choices) == 1 for chunk in text_chunks)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in text_chunks)
    assert streamed == whole.choices[0].message.content
    assert text_chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and whole.usage is not None
    assert usage_chunk.usage.prompt_tokens == len(question_ids)
    generated = reference_tokens(served.manifest, tiny_llm_folder(), question_ids, 12)
    assert usage_chunk.usage.completion_tokens == len(generated)
    assert usage_chunk.usage.model_dump() == whole.usage.model_dump()


def test_max_tokens_5_ends_with_length_after_5_tokens(served: Served) -> None:
    answer = served.client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)

    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 5


def test_a_stop_string_ends_the_text_before_it(served: Served) -> None:
    unstopped = greedy(served, 24)
    # Taken from the middle of the temperature-0 text, so it certainly occurs.
    middle = len(unstopped) // 2
    stop = unstopped[middle : middle + 2]
    assert stop.strip(), f"expected printable text to cut, got {unstopped!r}"

    answer = served.client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0, stop=["never generated", stop]
    )

    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == unstopped[: unstopped.index(stop)]


def test_temperature_0_is_the_raw_onnxruntime_greedy_loop_token_for_token(
    served: Served, question_ids: list[int]
) -> None:
    generated = reference_tokens(served.manifest, tiny_llm_folder(), question_ids, 16)
    text = tokenizer()

    answer = served.client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=16, temperature=0, logprobs=True
    )

    assert answer.usage is not None and answer.usage.completion_tokens == len(generated)
    assert answer.choices[0].message.content == text.decode(generated)
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    # Each token's own bytes, as the byte-level tokenizer spells that id, one entry per generated id.
    served_tokens = [bytes(token.bytes or []) for token in logprobs.content]
    assert served_tokens == [token_bytes(text, token_id) for token_id in generated]


def token_bytes(text: Tokenizer, token_id: int) -> bytes:
    """The bytes one id of a byte-level BPE stands for (its characters mapped back through GPT-2's table)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [byte for byte in range(256) if byte not in printable]
    byte_of = {chr(byte): byte for byte in printable} | {chr(256 + i): byte for i, byte in enumerate(others)}
    token = text.id_to_token(token_id)
    assert token is not None, f"token id {token_id}: not in the vocabulary"
    return bytes(byte_of[char] for char in token)


def test_the_same_seed_gives_the_same_text_and_another_seed_another(served: Served) -> None:
    def sampled(seed: int) -> str:
        answer = served.client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=12, temperature=1.0, seed=seed
        )
        return answer.choices[0].message.content or ""

    first, again, other = sampled(1234), sampled(1234), sampled(4321)

    assert first == again
    # Twelve draws from a 384-token vocabulary: two seeds agreeing on all of them would be a broken sampler.
    assert first != other


# ---- errors and models


def test_a_bad_request_is_raised_by_the_sdk_as_bad_request_error_in_openais_shape(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        served.client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=2.5)

    error = raised.value
    assert error.status_code == 400
    assert isinstance(error.body, dict)
    assert error.body == {
        "message": "temperature: expected a number from 0 to 2, got 2.5",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": None,
    }
    assert (error.type, error.param) == ("invalid_request_error", "temperature")


def test_models_are_listed_and_retrieved_by_any_reference(served: Served) -> None:
    listed = served.client.models.list()

    assert [model.id for model in listed.data] == [MODEL]
    for reference in (MODEL, f"{MODEL}:1", f"{MODEL}@latest"):
        retrieved = served.client.models.retrieve(reference)
        assert (retrieved.id, retrieved.object, retrieved.owned_by) == (reference, "model", "maas")
    with pytest.raises(openai.NotFoundError):
        served.client.models.retrieve("no-such-model")


# ---- limits over plain HTTP: each a 4xx in OpenAI's shape, naming the field


def chat(**fields: Any) -> bytes:
    return json.dumps({"model": MODEL, "messages": QUESTION, **fields}).encode()


LIMITS = [
    (chat(messages=[{"role": "user", "content": LONG_TEXT}]), "messages", "expected at most 255 tokens"),
    (chat(max_tokens=1000), "max_tokens", "expected at most "),
    (chat(temperature=-0.5), "temperature", "expected a number from 0 to 2, got -0.5"),
    (chat(n=5), "n", "expected 1 to 4 choices (MAAS_MAX_CHOICES), got 5"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop", "expected at most 4 strings, got 5"),
    (chat(messages=[]), "messages", "expected at least one message, got none"),
    (chat(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role", "expected system, developer"),
    (b'{"model":"tiny-llm","messages":[{"role":"user","content":"\xff\xfe"}]}', "body", "expected UTF-8"),
]


@pytest.mark.parametrize(
    ("body", "field", "says"), LIMITS, ids=[f"{i}-{case[1]}" for i, case in enumerate(LIMITS)]
)
def test_each_limit_is_a_4xx_in_openais_shape_naming_the_field(
    served: Served, body: bytes, field: str, says: str
) -> None:
    answer = send("POST", served.chat_url, body, JSON)

    assert 400 <= answer.status < 500, answer.body
    assert answer.headers["Content-Type"] == JSON
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}: {says}"), error["message"]
    # The transport's own refusal (the body) has no request field to name; every other names its param.
    assert error["param"] == (None if field == "body" else field)
    assert "words and more" not in error["message"]
