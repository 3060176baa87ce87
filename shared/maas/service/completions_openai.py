"""OpenAI's answers assembled from a run's events: a chat completion or a completion, whole or as the chunks
OpenAI streams (a role chunk per choice, content deltas, a finish chunk, then usage with no choices)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

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


class ChatRun:
    """A checked chat completion request, answered whole or as chunks."""

    def __init__(self, run: GenerationRun, *, logprobs: bool, include_usage: bool) -> None:
        self.run = run
        self.stream = run.stream
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.id = f"chatcmpl-{run.id}"

    def response(self) -> ChatCompletion:
        choices = _collect(self.run)
        usage = self.run.usage()
        return ChatCompletion(
            id=self.id,
            created=self.run.created,
            model=self.run.served.model_id,
            system_fingerprint=self.run.served.model_id,
            choices=[
                ChatChoice(
                    index=index,
                    message=AssistantMessage(content="".join(text.pieces)),
                    logprobs=chat_logprobs(text.logprobs) if self.logprobs else None,
                    finish_reason=text.finish_reason,
                )
                for index, text in sorted(choices.items())
            ],
            usage=wire_usage(usage),
            maas=maas_fields(usage.time_budget_exhausted),
        )

    def chunks(self) -> Iterator[ChatCompletionChunk]:
        for event in self.run.events():
            index = event.choice.index
            if isinstance(event, ChoiceStarted):
                yield self._chunk(
                    [ChatChunkChoice(index=index, delta=ChunkDelta(role="assistant", content=""))]
                )
            elif isinstance(event, ChoiceDelta):
                delta = event.delta
                if not delta.text and not (self.logprobs and delta.logprobs):
                    continue
                logprobs = chat_logprobs(delta.logprobs) if self.logprobs else None
                choice = ChatChunkChoice(index=index, delta=ChunkDelta(content=delta.text), logprobs=logprobs)
                yield self._chunk([choice])
            else:
                finished = event.finished
                choice = ChatChunkChoice(
                    index=index, delta=ChunkDelta(), finish_reason=finished.finish_reason
                )
                yield self._chunk([choice], maas=maas_fields(finished.time_budget_exhausted))
        if self.include_usage:
            usage = self.run.usage()
            yield self._chunk([], usage=wire_usage(usage), maas=maas_fields(usage.time_budget_exhausted))

    def _chunk(
        self,
        choices: list[ChatChunkChoice],
        *,
        usage: Usage | None = None,
        maas: MaasResponseFields | None = None,
    ) -> ChatCompletionChunk:
        served = self.run.served
        return ChatCompletionChunk(
            id=self.id,
            created=self.run.created,
            model=served.model_id,
            system_fingerprint=served.model_id,
            choices=choices,
            usage=usage,
            maas=maas,
        )


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


class CompletionRun:
    """A checked (legacy) completions request, answered whole or as chunks."""

    def __init__(self, run: GenerationRun, *, logprobs: bool, echo: bool, include_usage: bool) -> None:
        self.run = run
        self.stream = run.stream
        self.logprobs = logprobs
        self.echo = echo
        self.include_usage = include_usage
        self.id = f"cmpl-{run.id}"

    def response(self) -> Completion:
        collected = _collect(self.run)
        prompts = {choice.index: choice.prompt.text for choice in self.run.choices}
        offsets = _Offsets()
        choices = []
        for index, text in sorted(collected.items()):
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
        usage = self.run.usage()
        return self._completion(
            choices, usage=wire_usage(usage), maas=maas_fields(usage.time_budget_exhausted)
        )

    def chunks(self) -> Iterator[Completion]:
        offsets = _Offsets()
        for event in self.run.events():
            index = event.choice.index
            if isinstance(event, ChoiceStarted):
                prefix = event.choice.prompt.text if self.echo else ""
                offsets.start(index, len(prefix))
                if prefix:
                    yield self._completion([CompletionChoice(index=index, text=prefix, finish_reason=None)])
            elif isinstance(event, ChoiceDelta):
                delta = event.delta
                if not delta.text and not (self.logprobs and delta.logprobs):
                    continue
                logprobs = offsets.logprobs(index, delta.logprobs) if self.logprobs else None
                choice = CompletionChoice(index=index, text=delta.text, logprobs=logprobs, finish_reason=None)
                yield self._completion([choice])
            else:
                finished = event.finished
                choice = CompletionChoice(index=index, text="", finish_reason=finished.finish_reason)
                yield self._completion([choice], maas=maas_fields(finished.time_budget_exhausted))
        if self.include_usage:
            usage = self.run.usage()
            yield self._completion([], usage=wire_usage(usage), maas=maas_fields(usage.time_budget_exhausted))

    def _completion(
        self,
        choices: list[CompletionChoice],
        *,
        usage: Usage | None = None,
        maas: MaasResponseFields | None = None,
    ) -> Completion:
        served = self.run.served
        return Completion(
            id=self.id,
            created=self.run.created,
            model=served.model_id,
            system_fingerprint=served.model_id,
            choices=choices,
            usage=usage,
            maas=maas,
        )
