"""The checks a text-generation request passes before any token is generated, each a 400 naming the field.

Numbers a client set (temperature 2.5, n 9) are quoted back, since they are settings, not payload; text
(prompts, messages, stop strings) never is. Checks that need no model run before the registry is asked
anything; the prompt's length against the model's context runs once the model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from maas.config import ENV_MAX_CHOICES
from maas.errors import InvalidInput
from maas.generation.sampling import SamplingParams
from maas.protocol.openai_types import (
    MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
)
from maas.registry.manifest import GenerationDefaults

MAX_TEMPERATURE = 2.0
SEED_RANGE = (-(2**63), 2**63 - 1)
# "developer" is OpenAI's newer name for the system message; a chat template knows only "system".
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_ROLE_NAMES = "system, developer, user or assistant"
# Fields OpenAI clients send that maas's sampler has no counterpart for: accepted at these values only.
_NEUTRAL = "maas's sampler has no penalties or biases"


@dataclass(frozen=True, slots=True)
class RequestedSampling:
    """A request's sampling settings, checked; None where the model's defaults apply."""

    n: int = 1
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None

    def for_choice(self, index: int, defaults: GenerationDefaults, max_tokens: int) -> SamplingParams:
        """Choice `index`'s parameters: each choice draws from its own seed, derived from the request's,
        so n choices differ and the same request gives the same n texts."""
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k if self.top_k is None else self.top_k,
            seed=None if self.seed is None else (self.seed + index) % 2**64,
            stop=self.stop,
            logprobs=self.logprobs,
        )


class SamplingFields(Protocol):
    """The sampling fields every text-generation request names alike (OpenAI's, Triton's parameters)."""

    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...
    @property
    def top_k(self) -> int | None: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def stop(self) -> str | list[str] | None: ...


def check_sampling(
    fields: SamplingFields,
    *,
    max_choices: int,
    n: int | None = None,
    max_tokens: int | None = None,
    logprobs: int | None = None,
    logprobs_field: str = "top_logprobs",
) -> RequestedSampling:
    temperature, top_p, top_k, seed = fields.temperature, fields.top_p, fields.top_k, fields.seed
    if n is not None and not 1 <= n <= max_choices:
        raise InvalidInput(f"n: expected 1 to {max_choices} choices ({ENV_MAX_CHOICES}), got {n}")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidInput(f"max_tokens: expected at least 1, got {max_tokens}")
    if temperature is not None and not 0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidInput(f"temperature: expected a number from 0 to 2, got {temperature:g}")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidInput(f"top_p: expected a number above 0 and at most 1, got {top_p:g}")
    if top_k is not None and top_k < 0:
        raise InvalidInput(f"top_k: expected 0 (no cut) or more, got {top_k}")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise InvalidInput("seed: expected a 64-bit signed integer, got a larger one")
    if logprobs is not None and not 0 <= logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidInput(f"{logprobs_field}: expected 0 to {MAX_TOP_LOGPROBS}, got {logprobs}")
    return RequestedSampling(
        n=n or 1,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        stop=check_stop(fields.stop),
        logprobs=logprobs,
    )


def check_stop(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidInput(f"stop: expected at most {MAX_STOP_SEQUENCES} strings, got {len(stops)}")
    for index, text in enumerate(stops):
        where = "stop" if isinstance(stop, str) else f"stop[{index}]"
        if not text:
            raise InvalidInput(f"{where}: expected a non-empty string, got an empty one")
        check_text(where, text)
    return stops


def check_text(where: str, text: str) -> None:
    """JSON may escape a lone UTF-16 surrogate (\\ud800), which is no character and has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where}: expected Unicode text, got a lone surrogate escape") from None


def completion_budget(
    *, prompt_tokens: int, requested: int | None, default: int, context_length: int, prompt_field: str
) -> int:
    """The completion tokens a prompt may have: what was asked for, or the model's default, within what
    the context leaves after the prompt."""
    if prompt_tokens < 1:
        raise InvalidInput(f"{prompt_field}: expected at least one token, got an empty prompt")
    room = context_length - prompt_tokens
    if room < 1:
        raise InvalidInput(
            f"{prompt_field}: expected at most {context_length - 1} tokens (the model's context of "
            f"{context_length} less one to generate), got {prompt_tokens}"
        )
    if requested is None:
        return min(default, room)
    if requested > room:
        raise InvalidInput(
            f"max_tokens: expected at most {room} (the model's context of {context_length} less the "
            f"prompt's {prompt_tokens} tokens), got {requested}"
        )
    return requested


# ---- OpenAI requests


def check_chat_request(request: ChatCompletionRequest, max_choices: int) -> RequestedSampling:
    _check_neutral_sampling(request.frequency_penalty, request.presence_penalty, request.logit_bias)
    _refuse_set("tools", request.tools, "maas serves no tools")
    _refuse_set("functions", request.functions, "maas serves no tools")
    _refuse_set("function_call", request.function_call, "maas serves no tools")
    if request.tool_choice not in (None, "none", "auto"):
        raise InvalidInput("tool_choice: expected none or auto, as maas serves no tools")
    if request.response_format is not None and request.response_format.type != "text":
        raise InvalidInput("response_format.type: expected text, as maas does not constrain output")
    if request.modalities is not None and request.modalities != ["text"]:
        raise InvalidInput('modalities: expected ["text"], as maas generates text only')
    _refuse_set("audio", request.audio, "maas generates text only")
    _refuse_set("prediction", request.prediction, "maas does not take predicted outputs")
    _refuse_set("reasoning_effort", request.reasoning_effort, "maas's models do not reason separately")
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidInput("top_logprobs: expected only with logprobs true")
    return check_sampling(
        request,
        max_choices=max_choices,
        n=request.n,
        max_tokens=_max_tokens(request.max_tokens, request.max_completion_tokens),
        logprobs=(request.top_logprobs or 0) if request.logprobs else None,
    )


def check_completion_request(request: CompletionRequest, max_choices: int) -> RequestedSampling:
    _check_neutral_sampling(request.frequency_penalty, request.presence_penalty, request.logit_bias)
    _refuse_set("suffix", request.suffix, "maas does not insert text")
    if request.best_of is not None and request.best_of != (request.n or 1):
        raise InvalidInput(f"best_of: expected n ({request.n or 1}) or none, as maas ranks no candidates")
    if request.echo and request.logprobs is not None:
        raise InvalidInput("echo: expected false with logprobs, as maas scores no prompt tokens")
    prompts = completion_prompts(request.prompt)
    sampling = check_sampling(
        request,
        max_choices=max_choices,
        n=request.n,
        max_tokens=request.max_tokens,
        logprobs=request.logprobs,
        logprobs_field="logprobs",
    )
    if len(prompts) * sampling.n > max_choices:
        raise InvalidInput(
            f"prompt: expected at most {max_choices} choices in all ({ENV_MAX_CHOICES}), got "
            f"{len(prompts)} prompts of {sampling.n} choices each"
        )
    return sampling


def completion_prompts(prompt: str | list[str] | list[int]) -> list[str]:
    if isinstance(prompt, str):
        prompts = [prompt]
    elif any(isinstance(item, int) for item in prompt):
        raise InvalidInput("prompt: expected a string or a list of strings, got token ids")
    else:
        prompts = [item for item in prompt if isinstance(item, str)]
    if not prompts:
        raise InvalidInput("prompt: expected a string or at least one string, got an empty list")
    for index, text in enumerate(prompts):
        check_text("prompt" if isinstance(prompt, str) else f"prompt[{index}]", text)
    return prompts


def chat_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The messages as a chat template reads them: a role and a string of content each."""
    if not messages:
        raise InvalidInput("messages: expected at least one message, got none")
    rendered = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = ROLES.get(message.role)
        if role is None:
            shown = repr(message.role) if len(message.role) <= 32 else "a longer string"
            raise InvalidInput(f"{where}.role: expected {_ROLE_NAMES}, got {shown}")
        for field in ("tool_calls", "function_call", "audio"):
            _refuse_set(f"{where}.{field}", getattr(message, field), "maas serves text without tools")
        rendered.append({"role": role, "content": _message_text(where, message)})
    return rendered


def _message_text(where: str, message: ChatMessage) -> str:
    content = message.content
    if content is None:
        raise InvalidInput(f"{where}.content: expected a string or a list of text parts, got null")
    if isinstance(content, str):
        check_text(f"{where}.content", content)
        return content
    pieces = []
    for index, part in enumerate(content):
        part_where = f"{where}.content[{index}]"
        if part.type != "text":
            shown = repr(part.type) if len(part.type) <= 32 else "a longer string"
            raise InvalidInput(f"{part_where}.type: expected text, as maas serves text only, got {shown}")
        if part.text is None:
            raise InvalidInput(f"{part_where}.text: required field is missing")
        check_text(f"{part_where}.text", part.text)
        pieces.append(part.text)
    return "".join(pieces)


def _max_tokens(max_tokens: int | None, max_completion_tokens: int | None) -> int | None:
    if max_tokens is not None and max_completion_tokens is not None and max_tokens != max_completion_tokens:
        raise InvalidInput(
            "max_completion_tokens: expected the same as max_tokens when both are set, "
            f"got {max_completion_tokens} and {max_tokens}"
        )
    return max_completion_tokens if max_completion_tokens is not None else max_tokens


def _check_neutral_sampling(
    frequency_penalty: float | None, presence_penalty: float | None, logit_bias: dict[str, float] | None
) -> None:
    for field, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
        if value:
            raise InvalidInput(f"{field}: expected 0 or none, as {_NEUTRAL}, got {value:g}")
    if logit_bias:
        raise InvalidInput(f"logit_bias: expected an empty object or none, as {_NEUTRAL}")


def _refuse_set(field: str, value: object, why: str) -> None:
    """Refuse a field that means something maas cannot do, unless it is absent, null or empty."""
    if value is not None and value not in ([], {}):
        raise InvalidInput(f"{field}: expected none, as {why}")
