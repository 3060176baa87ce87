"""A chat completion or completion body that arrives without HTTP is read by the routes' own types, checked
in the same words, and refused where the event path cannot honour it (stream true)."""

from __future__ import annotations

from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.protocol.openai_types import ChatCompletionRequest, CompletionRequest
from maas.service.event_completions import text_request

CHAT = {"model": "tiny-llm", "messages": [{"role": "user", "content": "Hi"}]}
COMPLETION = {"model": "tiny-llm", "prompt": "Once"}


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (CHAT, ChatCompletionRequest),
        ({**CHAT, "stream": False, "max_tokens": 3, "temperature": 0, "seed": 1}, ChatCompletionRequest),
        (COMPLETION, CompletionRequest),
        ({**COMPLETION, "prompt": ["a", "b"], "logprobs": 2, "stream": None}, CompletionRequest),
    ],
)
def test_a_body_is_a_chat_with_messages_and_a_completion_with_a_prompt(
    body: dict[str, Any], kind: type[Any]
) -> None:
    assert type(text_request(body)) is kind


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {**CHAT, "prompt": "Once"},
            "expected either 'messages' (a chat completion) or 'prompt' (a completion), got both",
        ),
        (
            {"model": "tiny-llm"},
            "expected either 'messages' (a chat completion) or 'prompt' (a completion), got neither",
        ),
        ({**CHAT, "stream": True}, "stream: expected false or none, as the answer is written whole to S3"),
        (
            {**COMPLETION, "stream": True},
            "stream: expected false or none, as the answer is written whole to S3",
        ),
        ({**CHAT, "stream": "yes"}, "stream: input should be a valid boolean, got string"),
        ({**CHAT, "temperature": "hot"}, "temperature: input should be a valid number, got string"),
        ({**COMPLETION, "id": "r-1"}, "id: unknown field"),
        ({"messages": []}, "model: required field is missing"),
    ],
)
def test_a_body_the_event_paths_cannot_answer_is_refused_naming_the_field(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        text_request(body)

    assert raised.value.message == message
