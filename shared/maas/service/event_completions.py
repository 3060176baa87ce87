"""Text generation for the event paths: a text generator's batch-job lines and async requests, each a chat
completion or completion body as the OpenAI-compatible routes take it, answered whole by the completion
service into the OpenAI response object.

A body is a chat completion when it has "messages" and a completion when it has "prompt". It is read by the
routes' own pydantic types and checked by the service's own limits, so a field means the same, and is
refused in the same words, on every path. What the events change:

- `stream: true` is refused: an answer goes whole into one S3 object, which nothing can stream into.
- A job line names no `model`: the job's key does, and the job resolves it once, so every line is answered
  by one version. A line that names a model is refused rather than answered by one it did not ask for.
- Each answer has the service's generation deadline (MAAS_GENERATION_TIMEOUT, or the caller's clock when
  sooner) and ends with finish_reason "length", `maas.time_budget_exhausted` true, when that passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from maas.errors import InvalidInput, MaasError
from maas.protocol.openai_types import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest
from maas.protocol.validation_messages import describe_validation_error
from maas.service.completions import CompletionService, RequestContext
from maas.service.generation_on_demand import CHAT_FIELD, COMPLETION_FIELD
from maas.service.job_jsonl import not_json_message
from maas.service.job_output import error_line
from maas.service.json_values import NotJson, json_kind, loads_json

TextRequest = ChatCompletionRequest | CompletionRequest
_KINDS = "'messages' (a chat completion) or 'prompt' (a completion)"
# An async body's own key: it names the result object, and is no field of the request.
ASYNC_ID_FIELD = "id"


def text_request(body: Mapping[str, Any]) -> TextRequest:
    """The body as the route of its kind reads it; InvalidInput names the field and never quotes a value."""
    chat, completion = CHAT_FIELD in body, COMPLETION_FIELD in body
    if chat == completion:
        raise InvalidInput(f"expected either {_KINDS}, got {'both' if chat else 'neither'}")
    kind: type[TextRequest] = ChatCompletionRequest if chat else CompletionRequest
    try:
        request = kind.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
    if request.stream:
        raise InvalidInput("stream: expected false or none, as the answer is written whole to S3")
    return request


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """One request answered: the OpenAI response object as JSON, and what it used."""

    document: bytes
    prompt_tokens: int
    completion_tokens: int
    time_budget_exhausted: bool


class EventCompletions:
    """The completion service as the event paths ask it: one whole answer per body."""

    def __init__(self, service: CompletionService) -> None:
        self.service = service

    def answer(self, request: TextRequest, remaining_ms: Callable[[], int] | None = None) -> TextAnswer:
        context = RequestContext(remaining_ms=remaining_ms)
        response: ChatCompletion | Completion
        if isinstance(request, ChatCompletionRequest):
            response = self.service.chat(request, context).response()
        else:
            response = self.service.complete(request, context).response()
        usage, maas = response.usage, response.maas
        assert usage is not None and maas is not None, "a whole answer carries its usage"
        return TextAnswer(
            response.model_dump_json().encode(),
            usage.prompt_tokens,
            usage.completion_tokens,
            maas.time_budget_exhausted,
        )

    def answer_async(self, body: Mapping[str, Any], remaining_ms: Callable[[], int] | None) -> TextAnswer:
        """An async request's body: the request fields, its model among them, and the id of its result."""
        request = {key: value for key, value in body.items() if key != ASYNC_ID_FIELD}
        try:
            parsed = text_request(request)
        except InvalidInput as exc:
            raise InvalidInput(_in_message(exc.message)) from None
        return self.answer(parsed, remaining_ms)

    def prompt_job(self, name: str, version: int) -> PromptJob:
        """The job's lines, each answered by `version`, loaded now: a model that cannot load fails the job
        (or, when storage is down, sends it back to the queue) instead of failing every line."""
        self.service.loader.get(name, version)
        return PromptJob(self, f"{name}/versions/{version}")


@dataclass(frozen=True, slots=True)
class PromptLine:
    """One job line's output line (no newline), and either its error or its answer."""

    output: bytes
    error: str | None = None
    answer: TextAnswer | None = None


class PromptJob:
    """A text generator's batch job, line by line: each jsonl line a chat completion or completion body
    without `model`, answered by the version the job pinned.

    A line's mistake (not JSON, a bad field, a prompt over the context) is that line's error; a server
    failure is raised, so it fails the job or, when transient, sends it back to the queue."""

    def __init__(self, completions: EventCompletions, model: str) -> None:
        self.completions = completions
        self.model = model

    def answer(self, number: int, line: bytes, remaining_ms: Callable[[], int] | None) -> PromptLine:
        try:
            answer = self.completions.answer(self._request(line), remaining_ms)
        except MaasError as exc:
            if exc.status >= 500:  # a server failure is the job's, not the line's
                raise
            return PromptLine(error_line(number, exc.message), error=exc.message)
        return PromptLine(answer.document, answer=answer)

    def _request(self, line: bytes) -> TextRequest:
        try:
            body = loads_json(line)
        except NotJson as exc:
            raise InvalidInput(not_json_message(exc)) from None
        if not isinstance(body, dict):
            raise InvalidInput(f"expected a JSON object with {_KINDS}, got a JSON {json_kind(body)}")
        if "model" in body:
            raise InvalidInput(
                "model: expected none, as every line is answered by the model the job's key names "
                "(jobs/<model-ref>/<job-id>/input.jsonl)"
            )
        return text_request({**body, "model": self.model})


def _in_message(message: str) -> str:
    """A body-level message (no field named) says it is about the SQS message's body."""
    return message if not message.startswith("expected ") else f"message: {message}"
