"""OpenAI's answers assembled from a run's events: a chat completion or a completion, whole or as the chunks
OpenAI streams (a role chunk per choice, content deltas, a finish chunk, then usage with no choices)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from maas.generation.events import TokenLogprob as GeneratedLogprob
from maas.protocol.openai_types import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    FinishReason,
    MaasResponseFields,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from maas.service.completions_runs import (
    ChoiceDelta,
    ChoiceFinished,
    ChoiceStarted,
    GenerationRun,
    UsageCount,
)


def wire_usage(usage: UsageCount) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def maas_fields(time_budget_exhausted: bool) -> MaasResponseFields:
    return MaasResponseFields(time_budget_exhausted=time_budget_exhausted)


@dataclass
class _ChoiceText:
    pieces: list[str] = field(default_factory=list)
    logprobs: list[GeneratedLogprob] = field(default_factory=list)
    finish_reason: FinishReason = "length"


def _collect(run: GenerationRun) -> dict[int, _ChoiceText]:
    choices: dict[int, _ChoiceText] = {}
    for event in run.events():
        text = choices.setdefault(event.choice.index, _ChoiceText())
        if isinstance(event, ChoiceDelta):
            text.pieces.append(event.delta.text)
            text.logprobs.extend(event.delta.logprobs)
        elif isinstance(event, ChoiceFinished):
            text.finish_reason = event.finished.finish_reason
    return choices


def chat_logprobs(logprobs: Sequence[GeneratedLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprob(
                token=item.token,
                logprob=item.logprob,
                bytes=list(item.bytes),
                top_logprobs=[
                    TopLogprob(token=token, logprob=logprob, bytes=list(token.encode()))
                    for token, logprob in item.top
                ],
            )
            for item in logprobs
        ]
    )


class _OpenAIRun:
    """A checked OpenAI request: what every answer and chunk of it carries, and how a stream ends."""

    id_prefix = ""

    def __init__(self, run: GenerationRun, *, logprobs: bool, include_usage: bool) -> None:
        self.run = run
        self.stream = run.stream
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.id = f"{self.id_prefix}-{run.id}"

    def _envelope(self) -> dict[str, Any]:
        served = self.run.served
        return {
            "id": self.id,
            "created": self.run.created,
            "model": served.model_id,
            "system_fingerprint": served.model_id,
        }

    def _usage(self) -> dict[str, Any]:
        """The fields of a whole answer, or a stream's last chunk, that say what the run used."""
        usage = self.run.usage()
        return {"usage": wire_usage(usage), "maas": maas_fields(usage.time_budget_exhausted)}

    def _wanted(self, delta: ChoiceDelta) -> bool:
        """A delta worth a chunk: text, or the logprobs of tokens whose text is still held back."""
        return bool(delta.delta.text or (self.logprobs and delta.delta.logprobs))


class ChatRun(_OpenAIRun):
    """A checked chat completion request, answered whole or as chunks."""

    id_prefix = "chatcmpl"

    def response(self) -> ChatCompletion:
        choices = [
            ChatChoice(
                index=index,
                message=AssistantMessage(content="".join(text.pieces)),
                logprobs=chat_logprobs(text.logprobs) if self.logprobs else None,
                finish_reason=text.finish_reason,
            )
            for index, text in sorted(_collect(self.run).items())
        ]
        return ChatCompletion(**self._envelope(), choices=choices, **self._usage())

    def chunks(self) -> Iterator[ChatCompletionChunk]:
        envelope = self._envelope()
        for event in self.run.events():
            index = event.choice.index
            if isinstance(event, ChoiceStarted):
                delta = ChunkDelta(role="assistant", content="")
                yield ChatCompletionChunk(**envelope, choices=[ChatChunkChoice(index=index, delta=delta)])
            elif isinstance(event, ChoiceDelta):
                if not self._wanted(event):
                    continue
                logprobs = chat_logprobs(event.delta.logprobs) if self.logprobs else None
                choice = ChatChunkChoice(
                    index=index, delta=ChunkDelta(content=event.delta.text), logprobs=logprobs
                )
                yield ChatCompletionChunk(**envelope, choices=[choice])
            else:
                finished = event.finished
                choice = ChatChunkChoice(
                    index=index, delta=ChunkDelta(), finish_reason=finished.finish_reason
                )
                maas = maas_fields(finished.time_budget_exhausted)
                yield ChatCompletionChunk(**envelope, choices=[choice], maas=maas)
        if self.include_usage:
            yield ChatCompletionChunk(**envelope, choices=[], **self._usage())


class _Offsets:
    """Where each token starts in a choice's text, for completions' logprobs.text_offset."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def start(self, index: int, at: int) -> None:
        self._next[index] = at

    def logprobs(self, index: int, logprobs: Sequence[GeneratedLogprob]) -> CompletionLogprobs:
        offsets = []
        at = self._next.get(index, 0)
        for item in logprobs:
            offsets.append(at)
            at += len(item.token)
        self._next[index] = at
        return CompletionLogprobs(
            tokens=[item.token for item in logprobs],
            token_logprobs=[item.logprob for item in logprobs],
            top_logprobs=[dict(item.top) for item in logprobs],
            text_offset=offsets,
        )


class CompletionRun(_OpenAIRun):
    """A checked (legacy) completions request, answered whole or as chunks."""

    id_prefix = "cmpl"

    def __init__(self, run: GenerationRun, *, logprobs: bool, echo: bool, include_usage: bool) -> None:
        super().__init__(run, logprobs=logprobs, include_usage=include_usage)
        self.echo = echo

    def response(self) -> Completion:
        prompts = {choice.index: choice.prompt.text for choice in self.run.choices}
        offsets = _Offsets()
        choices = []
        for index, text in sorted(_collect(self.run).items()):
            prefix = prompts[index] if self.echo else ""
            offsets.start(index, len(prefix))
            choices.append(
                CompletionChoice(
                    index=index,
                    text=prefix + "".join(text.pieces),
                    logprobs=offsets.logprobs(index, text.logprobs) if self.logprobs else None,
                    finish_reason=text.finish_reason,
                )
            )
        return Completion(**self._envelope(), choices=choices, **self._usage())

    def chunks(self) -> Iterator[Completion]:
        envelope = self._envelope()
        offsets = _Offsets()
        for event in self.run.events():
            index = event.choice.index
            if isinstance(event, ChoiceStarted):
                prefix = event.choice.prompt.text if self.echo else ""
                offsets.start(index, len(prefix))
                if prefix:
                    choice = CompletionChoice(index=index, text=prefix, finish_reason=None)
                    yield Completion(**envelope, choices=[choice])
            elif isinstance(event, ChoiceDelta):
                if not self._wanted(event):
                    continue
                logprobs = offsets.logprobs(index, event.delta.logprobs) if self.logprobs else None
                choice = CompletionChoice(
                    index=index, text=event.delta.text, logprobs=logprobs, finish_reason=None
                )
                yield Completion(**envelope, choices=[choice])
            else:
                finished = event.finished
                choice = CompletionChoice(index=index, text="", finish_reason=finished.finish_reason)
                yield Completion(
                    **envelope, choices=[choice], maas=maas_fields(finished.time_budget_exhausted)
                )
        if self.include_usage:
            yield Completion(**envelope, choices=[], **self._usage())
