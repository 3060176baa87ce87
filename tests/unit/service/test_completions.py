"""The completion service over the real registry (moto) and the tiny test decoder: references resolve as for
inference (aliases, canary splits by routing key, name:version), the time budget comes from the settings and
the Lambda clock, and every answer it assembles is one the openai SDK's own types accept."""

from __future__ import annotations

import time
from typing import Any

import pytest
from openai.types import Completion as SdkCompletion
from openai.types import Model as SdkModel
from openai.types.chat import ChatCompletion as SdkChatCompletion
from openai.types.chat import ChatCompletionChunk as SdkChatCompletionChunk

from maas.config import Settings
from maas.errors import InvalidInput
from maas.generation.loader import GeneratorLoader
from maas.protocol.generate_types import GenerateRequest
from maas.protocol.openai_types import ChatCompletionRequest, CompletionRequest
from maas.registry import ModelRef, ModelRegistry
from maas.registry.admin import RegistryAdmin
from maas.registry.documents import CanarySplit
from maas.service.completions import CompletionService, RequestContext, generation_deadline, parse_model_id
from tests.support.aws import TEST_BUCKET
from tests.support.llm import publish_tiny_llm

MODEL = "tiny-llm"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def service(registry: ModelRegistry) -> CompletionService:
    publish_tiny_llm(registry)
    settings = Settings(bucket=TEST_BUCKET, provider="cpu", intra_op_threads=1, warmup=False)
    return CompletionService(registry, settings, GeneratorLoader(registry, settings))


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": MODEL, "messages": HELLO, **fields})


@pytest.mark.parametrize(
    ("model", "ref"),
    [
        ("m", ModelRef("m")),
        ("m@staging", ModelRef("m", alias="staging")),
        ("m:3", ModelRef("m", version=3)),
        ("m:latest", ModelRef("m", alias="latest")),
        ("m/versions/4", ModelRef("m", version=4)),
    ],
)
def test_a_model_field_is_any_maas_reference_or_name_colon_version(model: str, ref: ModelRef) -> None:
    assert parse_model_id(model) == ref


@pytest.mark.parametrize("model", ["", "M", "m:", "m@", "m:3:4", "m@a:3", "m:0", "a/b"])
def test_a_model_field_that_is_no_reference_is_refused_naming_model(model: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_model_id(model)

    assert refused.value.message.startswith(
        "model: expected a model reference (name, name@alias, name:version"
    )


def test_a_canary_split_goes_by_the_routing_key_else_by_user(service: CompletionService) -> None:
    publish_tiny_llm(service.registry)
    RegistryAdmin(service.registry).set_alias(
        MODEL, "production", 1, canary=CanarySplit(version=2, weight=0.5)
    )

    by_user = {
        user: service.chat(chat(max_tokens=1, user=user)).run.served.version for user in map(str, range(24))
    }
    again = {user: service.chat(chat(max_tokens=1, user=user)).run.served.version for user in by_user}
    header_wins = service.chat(chat(max_tokens=1, user="0"), RequestContext(routing_key="fixed")).run.served

    assert again == by_user
    assert set(by_user.values()) == {1, 2}
    assert (
        header_wins.version
        == service.chat(chat(max_tokens=1), RequestContext(routing_key="fixed")).run.served.version
    )


def test_the_time_budget_is_the_setting_or_the_functions_time_less_a_margin_whichever_is_sooner() -> None:
    off = Settings(generation_timeout_seconds=0)
    before = time.monotonic()

    assert generation_deadline(off, None) is None
    setting = generation_deadline(Settings(generation_timeout_seconds=30), None)
    assert setting is not None and setting >= before + 30
    # Less than the margin left: the budget is spent before it starts.
    clock = generation_deadline(Settings(generation_timeout_seconds=30), lambda: 500)
    assert clock is not None and clock < before
    later = generation_deadline(off, lambda: 600_000)
    assert later is not None and later > before + 500


def test_every_answer_is_one_the_openai_sdks_own_types_accept(service: CompletionService) -> None:
    whole = service.chat(chat(max_tokens=3, n=2, logprobs=True, top_logprobs=2)).response()
    chunks = list(
        service.chat(chat(max_tokens=3, stream=True, stream_options={"include_usage": True})).chunks()
    )
    completion = service.complete(
        CompletionRequest(model=MODEL, prompt="Hi", max_tokens=3, logprobs=1, temperature=0)
    ).response()
    streamed = list(
        service.complete(CompletionRequest(model=MODEL, prompt="Hi", max_tokens=3, stream=True)).chunks()
    )

    sdk = SdkChatCompletion.model_validate(whole.model_dump(mode="json"))
    assert [choice.index for choice in sdk.choices] == [0, 1]
    assert sdk.choices[0].logprobs is not None and sdk.choices[0].logprobs.content is not None
    for chunk in chunks:
        SdkChatCompletionChunk.model_validate(chunk.model_dump(mode="json"))
    SdkCompletion.model_validate(completion.model_dump(mode="json"))
    # The SDK's type requires a finish_reason that OpenAI itself streams as null before a choice's last
    # chunk (its stream reader does not validate); the last chunk of each choice has one.
    for each in streamed:
        if each.choices and each.choices[0].finish_reason is not None:
            SdkCompletion.model_validate(each.model_dump(mode="json"))
    for model in service.models().data:
        SdkModel.model_validate(model.model_dump(mode="json"))


def test_a_streamed_completion_echoes_its_prompt_first(service: CompletionService) -> None:
    request = CompletionRequest(
        model=MODEL, prompt="Grüezi", echo=True, max_tokens=2, temperature=0, stream=True
    )

    chunks = list(service.complete(request).chunks())
    whole = service.complete(request.model_copy(update={"stream": False})).response()

    assert chunks[0].choices[0].text == "Grüezi"
    assert "".join(chunk.choices[0].text for chunk in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_triton_generate_answers_one_choice_with_its_counts(service: CompletionService) -> None:
    request = GenerateRequest.model_validate(
        {"id": "r1", "text_input": "Hello", "parameters": {"max_tokens": 3, "temperature": 0}}
    )

    answer = service.generate(ModelRef(MODEL), request, stream=False).response()
    events = list(service.generate(ModelRef(MODEL, version=1), request, stream=True).chunks())

    assert (answer.id, answer.model_name, answer.model_version) == ("r1", MODEL, "1")
    assert answer.completion_tokens == 3
    assert "".join(event.text_output for event in events) == answer.text_output
    assert events[-1].finish_reason == answer.finish_reason
