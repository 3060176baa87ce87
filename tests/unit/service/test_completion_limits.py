"""The checks a text-generation request passes before any model is asked for: each refusal names the field,
the limit and the number that broke it, never the text."""

from __future__ import annotations

from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.protocol.generate_types import GenerateParameters
from maas.protocol.openai_types import ChatCompletionRequest, ChatMessage, CompletionRequest
from maas.registry.manifest import GenerationDefaults
from maas.service.completions_limits import (
    RequestedSampling,
    chat_messages,
    check_chat_request,
    check_completion_request,
    check_sampling,
    completion_budget,
)

MAX_CHOICES = 4
# Set beside the sampling fields rather than among them: they differ between OpenAI's APIs and Triton's.
_BESIDE = ("n", "max_tokens", "logprobs")


def sampling(**fields: Any) -> RequestedSampling:
    beside = {name: fields.pop(name) for name in _BESIDE if name in fields}
    return check_sampling(GenerateParameters.model_validate(fields), max_choices=MAX_CHOICES, **beside)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 5}, "n: expected 1 to 4 choices (MAAS_MAX_CHOICES), got 5"),
        ({"max_tokens": -3}, "max_tokens: expected at least 1, got -3"),
        ({"temperature": 2.0001}, "temperature: expected a number from 0 to 2, got 2.0001"),
        ({"top_p": 0.0}, "top_p: expected a number above 0 and at most 1, got 0"),
        ({"top_k": -2}, "top_k: expected 0 (no cut) or more, got -2"),
        ({"seed": -(2**63) - 1}, "seed: expected a 64-bit signed integer, got a larger one"),
        ({"stop": ["a"] * 5}, "stop: expected at most 4 strings, got 5"),
        ({"stop": ""}, "stop: expected a non-empty string, got an empty one"),
        ({"stop": ["ok", "\ud800"]}, "stop[1]: expected Unicode text, got a lone surrogate escape"),
        ({"logprobs": 21}, "top_logprobs: expected 0 to 20, got 21"),
    ],
)
def test_sampling_out_of_range_is_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        sampling(**fields)

    assert refused.value.message == message


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "n": 4, "stop": ["a", "b", "c", "d"]},
        {"temperature": 2.0, "top_p": 1e-9, "seed": 2**63 - 1, "logprobs": 20},
        {"seed": -(2**63), "stop": "one"},
    ],
)
def test_sampling_at_the_edges_of_its_ranges_is_accepted(fields: dict[str, Any]) -> None:
    sampling(**fields)


def test_each_choice_draws_from_its_own_seed_and_unset_values_take_the_models_defaults() -> None:
    defaults = GenerationDefaults(temperature=0.7, top_p=0.9, top_k=40, max_tokens=99)
    requested = RequestedSampling(n=3, seed=2**64 - 2, top_p=0.5, stop=("\n",))

    params = [requested.for_choice(index, defaults, max_tokens=12) for index in range(3)]

    # Derived seeds wrap around 2**64, so any 64-bit seed has n distinct successors.
    assert [p.seed for p in params] == [2**64 - 2, 2**64 - 1, 0]
    assert {(p.temperature, p.top_p, p.top_k, p.max_tokens, p.stop) for p in params} == {
        (0.7, 0.5, 40, 12, ("\n",))
    }
    assert RequestedSampling().for_choice(0, defaults, max_tokens=1).seed is None


@pytest.mark.parametrize(
    ("prompt_tokens", "requested", "expected"),
    [
        (10, None, 99),  # the model's default
        (200, None, 56),  # the default, cut to what the context leaves
        (10, 246, 246),  # exactly what is left
    ],
)
def test_the_completion_budget_is_what_was_asked_or_the_default_within_the_context(
    prompt_tokens: int, requested: int | None, expected: int
) -> None:
    budget = completion_budget(
        prompt_tokens=prompt_tokens,
        requested=requested,
        default=99,
        context_length=256,
        prompt_field="prompt",
    )

    assert budget == expected


@pytest.mark.parametrize(
    ("prompt_tokens", "requested", "message"),
    [
        (0, None, "prompt: expected at least one token, got an empty prompt"),
        (
            256,
            None,
            "prompt: expected at most 255 tokens (the model's context of 256 less one to generate), got 256",
        ),
        (
            10,
            247,
            "max_tokens: expected at most 246 (the model's context of 256 less the prompt's 10 tokens), "
            "got 247",
        ),
    ],
)
def test_a_prompt_or_budget_the_context_cannot_hold_is_refused(
    prompt_tokens: int, requested: int | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        completion_budget(
            prompt_tokens=prompt_tokens,
            requested=requested,
            default=99,
            context_length=256,
            prompt_field="prompt",
        )

    assert refused.value.message == message


def test_messages_reach_the_template_as_roles_and_strings() -> None:
    messages = [
        ChatMessage(role="developer", content="Be terse."),
        ChatMessage(
            role="user", content=[{"type": "text", "text": "Hello, "}, {"type": "text", "text": "Zürich"}]
        ),
        ChatMessage(role="assistant", content="Grüezi", refusal=None, tool_calls=[]),
    ]

    assert chat_messages(messages) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello, Zürich"},
        {"role": "assistant", "content": "Grüezi"},
    ]


def test_a_role_that_is_not_a_chat_role_is_refused_without_quoting_a_long_one() -> None:
    with pytest.raises(InvalidInput) as refused:
        chat_messages([ChatMessage(role="x" * 100, content="hi")])

    assert refused.value.message == (
        "messages[0].role: expected system, developer, user or assistant, got a longer string"
    )


def test_openai_requests_at_openais_defaults_pass_and_others_name_their_field() -> None:
    neutral = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [],
            "frequency_penalty": 0,
            "logit_bias": {},
            "tools": [],
            "tool_choice": "auto",
        }
    )
    assert check_chat_request(neutral, MAX_CHOICES) == RequestedSampling()

    chat = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [], "max_completion_tokens": 7, "logprobs": True, "top_logprobs": 2}
    )
    assert check_chat_request(chat, MAX_CHOICES) == RequestedSampling(max_tokens=7, logprobs=2)
    logprobs_off = ChatCompletionRequest.model_validate({"model": "m", "messages": [], "logprobs": False})
    assert check_chat_request(logprobs_off, MAX_CHOICES).logprobs is None

    with pytest.raises(InvalidInput, match=r"^prediction: expected none"):
        check_chat_request(
            ChatCompletionRequest.model_validate(
                {"model": "m", "messages": [], "prediction": {"type": "content"}}
            ),
            MAX_CHOICES,
        )
    with pytest.raises(InvalidInput, match=r"^best_of: expected n \(2\) or none"):
        check_completion_request(
            CompletionRequest.model_validate({"model": "m", "prompt": "p", "n": 2, "best_of": 3}), MAX_CHOICES
        )
