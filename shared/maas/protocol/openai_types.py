"""OpenAI-compatible wire types for /openai/v1/: chat completions, completions, models, stream chunks, errors.

Answers are written as OpenAI writes them: `null` where OpenAI sends null (logprobs, finish_reason before a
choice's last chunk, refusal), and a field left out where OpenAI leaves it out (a chunk's usage before the
last, an empty delta).

Requests accept what OpenAI's clients commonly send. A field maas cannot honour is declared here all the
same, so that the service can refuse a value it would otherwise ignore with a 400 naming that field (a
non-zero penalty, tools, a JSON response format); unknown fields are refused as OpenAI refuses them. Ranges
are documented in the schema and checked by the service (maas.service.completions_limits), whose messages
say the limit and the value that broke it.

A chat completion's request, answer, chunks and the error shape are built when this module is imported: the
generate function's first request is most often a chat completion. The types of completions and of the model
list are built on first use (`_ON_DEMAND`), by the route that uses them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

# OpenAI allows up to 4 stop sequences; so do we.
MAX_STOP_SEQUENCES = 4
# Alternatives per token a request may ask for (top_logprobs, completions' logprobs).
MAX_TOP_LOGPROBS = 20


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The config of a type only some routes use: pydantic builds its validator and serializer on first use.
_ON_DEMAND = ConfigDict(defer_build=True)


def _omitted_when_none(value: object) -> bool:
    return value is None


def _range(minimum: float, maximum: float, *, exclusive_minimum: bool = False) -> dict[str, Any]:
    low = "exclusiveMinimum" if exclusive_minimum else "minimum"
    return {low: minimum, "maximum": maximum}


# ---- requests


class TextContentPart(BaseModel):
    """One part of a message's content. Only text parts are served; others are refused by type."""

    # Other part types carry other keys (image_url, input_audio): read past them so the type is named.
    model_config = ConfigDict(extra="ignore")

    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(_Wire):
    role: StrictStr = Field(description="system, developer (rendered as system), user or assistant.")
    content: StrictStr | list[TextContentPart] | None = None
    name: StrictStr | None = Field(default=None, description="Accepted and ignored.")
    # What the SDK writes back when a client replays an assistant message; accepted while empty.
    refusal: StrictStr | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None
    audio: Any = None
    annotations: list[Any] | None = None


class StreamOptions(_Wire):
    include_usage: StrictBool | None = Field(
        default=None, description="End the stream with a chunk carrying usage and no choices."
    )


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: StrictStr = Field(description="Only `text` is served.")


class _SamplingFields(_Wire):
    """What chat completions and completions share."""

    model: StrictStr = Field(description="A maas model reference: name, name@alias, name:version.")
    max_tokens: StrictInt | None = Field(
        default=None, description="Completion tokens at most; the model's default when unset."
    )
    temperature: StrictFloat | None = Field(default=None, json_schema_extra=_range(0, 2))
    top_p: StrictFloat | None = Field(default=None, json_schema_extra=_range(0, 1, exclusive_minimum=True))
    top_k: StrictInt | None = Field(
        default=None, description="maas's extra: 0 for no top-k cut.", json_schema_extra={"minimum": 0}
    )
    n: StrictInt | None = Field(default=None, description="Choices to generate, one after the other.")
    stop: StrictStr | list[StrictStr] | None = Field(
        default=None, description=f"Up to {MAX_STOP_SEQUENCES} strings; the text ends before the first."
    )
    seed: StrictInt | None = Field(default=None, description="The same seed gives the same text.")
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    user: StrictStr | None = Field(
        default=None, description="Pins the caller to one side of a canary split (maas's routing key)."
    )
    # Accepted at OpenAI's defaults only: maas's sampler has no penalties or biases.
    frequency_penalty: StrictFloat | None = Field(default=None, description="Only 0.")
    presence_penalty: StrictFloat | None = Field(default=None, description="Only 0.")
    logit_bias: dict[str, StrictFloat] | None = Field(default=None, description="Only empty.")
    # Accepted and ignored.
    metadata: dict[str, StrictStr] | None = None
    store: StrictBool | None = None
    service_tier: StrictStr | None = None


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage]
    max_completion_tokens: StrictInt | None = Field(
        default=None, description="The same as max_tokens; give one, or both equal."
    )
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, json_schema_extra=_range(0, MAX_TOP_LOGPROBS))
    # Refused unless empty or at their defaults: maas serves text, without tools.
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: ResponseFormat | None = None
    modalities: list[StrictStr] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: StrictStr | None = None


class CompletionRequest(_SamplingFields):
    model_config = _ON_DEMAND

    prompt: StrictStr | list[StrictStr] | list[StrictInt] = Field(
        description="A string, or a list of strings (choices for each, in order); token ids are refused."
    )
    echo: StrictBool | None = Field(default=None, description="Prefix each choice's text with its prompt.")
    logprobs: StrictInt | None = Field(default=None, json_schema_extra=_range(0, MAX_TOP_LOGPROBS))
    best_of: StrictInt | None = Field(default=None, description="Only equal to n.")
    suffix: StrictStr | None = Field(default=None, description="Only null.")


# ---- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class MaasResponseFields(BaseModel):
    time_budget_exhausted: bool = Field(
        description="Generation stopped at the request's time budget (finish_reason `length`)."
    )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


FinishReason = Literal["stop", "length"]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


class _Answer(BaseModel):
    """What every answer and chunk carries: which request, when, and which version answered."""

    id: str
    created: int
    model: str = Field(description="The version that answered, as name:version.")
    system_fingerprint: str = Field(
        description="The version that answered: the same seed gives the same text."
    )


class ChatCompletion(_Answer):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage
    maas: MaasResponseFields


class ChunkDelta(BaseModel):
    """A choice's next piece: the role on its first chunk, text after it, nothing on its last (`{}`)."""

    role: Literal["assistant"] | None = Field(default=None, exclude_if=_omitted_when_none)
    content: str | None = Field(default=None, exclude_if=_omitted_when_none)


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(_Answer):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(
        default=None, description="Only on the last chunk, with no choices.", exclude_if=_omitted_when_none
    )
    maas: MaasResponseFields | None = Field(
        default=None, description="On a choice's last chunk and usage.", exclude_if=_omitted_when_none
    )


class CompletionLogprobs(BaseModel):
    model_config = _ON_DEMAND

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    model_config = _ON_DEMAND

    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = Field(description="null on a stream chunk before the last.")


class Completion(_Answer):
    """A whole completion, and also each chunk of a streamed one (as OpenAI streams them)."""

    model_config = _ON_DEMAND

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage | None = Field(
        default=None, description="Always on a whole completion.", exclude_if=_omitted_when_none
    )
    maas: MaasResponseFields | None = Field(default=None, exclude_if=_omitted_when_none)


class ModelObject(BaseModel):
    model_config = _ON_DEMAND

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    model_config = _ON_DEMAND

    object: Literal["list"] = "list"
    data: list[ModelObject]


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error shape, on every /openai/v1/ answer that is not a 2xx."""

    error: OpenAIError
