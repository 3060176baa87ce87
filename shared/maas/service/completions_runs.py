"""One checked text-generation request, ready to run: its choices generated one after the other on the loaded
model, within one time budget, as a stream of events any answer format is assembled from.

Counts and timings are logged and measured when the run ends (or is abandoned by a client that went away);
prompt and completion text never are.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from maas.generation.events import Finished, TextDelta
from maas.generation.sampling import SamplingParams
from maas.generation.text_generator import TextGenerator
from maas.observability import MetricUnit, logger, metrics


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """The version that answers: the name a client asked for and the version its reference resolved to."""

    name: str
    version: int

    @property
    def model_id(self) -> str:
        """As OpenAI answers' `model` field names it: smollm2-135m:3."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    prompt: Prompt
    params: SamplingParams


@dataclass(frozen=True, slots=True)
class ChoiceStarted:
    choice: Choice


@dataclass(frozen=True, slots=True)
class ChoiceDelta:
    choice: Choice
    delta: TextDelta


@dataclass(frozen=True, slots=True)
class ChoiceFinished:
    choice: Choice
    finished: Finished


ChoiceEvent = ChoiceStarted | ChoiceDelta | ChoiceFinished


@dataclass(frozen=True, slots=True)
class UsageCount:
    prompt_tokens: int
    completion_tokens: int
    time_budget_exhausted: bool

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class _Tally:
    completion_tokens: int = 0
    finished_choices: int = 0
    time_budget_exhausted: bool = False
    first_token_at: float | None = None
    finish_reasons: list[str] = field(default_factory=list)


class GenerationRun:
    """A checked request: `events()` generates it, once. `api` names the answer format in logs."""

    def __init__(
        self,
        generator: TextGenerator,
        served: ServedVersion,
        choices: tuple[Choice, ...],
        *,
        api: str,
        stream: bool,
        deadline: float | None,
        started: float,
    ) -> None:
        self.generator = generator
        self.served = served
        self.choices = choices
        self.api = api
        self.stream = stream
        self.deadline = deadline
        self.started = started
        self.id = uuid.uuid4().hex
        self.created = int(time.time())
        self._tally = _Tally()

    @property
    def prompt_tokens(self) -> int:
        """Each prompt once, however many choices continue it (as OpenAI counts them)."""
        distinct = {id(choice.prompt): len(choice.prompt.token_ids) for choice in self.choices}
        return sum(distinct.values())

    def usage(self) -> UsageCount:
        """What the run used so far: all of it once `events()` is exhausted."""
        tally = self._tally
        return UsageCount(self.prompt_tokens, tally.completion_tokens, tally.time_budget_exhausted)

    def events(self) -> Iterator[ChoiceEvent]:
        tally = self._tally
        try:
            for choice in self.choices:
                yield ChoiceStarted(choice)
                for item in self.generator.generate(choice.prompt.token_ids, choice.params, self.deadline):
                    if isinstance(item, Finished):
                        tally.completion_tokens += item.completion_tokens
                        tally.time_budget_exhausted |= item.time_budget_exhausted
                        tally.finish_reasons.append(item.finish_reason)
                        tally.finished_choices += 1
                        yield ChoiceFinished(choice, item)
                    else:
                        if tally.first_token_at is None and item.token_ids:
                            tally.first_token_at = time.perf_counter()
                        yield ChoiceDelta(choice, item)
        finally:
            self._record()

    def _record(self) -> None:
        tally = self._tally
        ended = time.perf_counter()
        duration_ms = round((ended - self.started) * 1000, 1)
        summary: dict[str, object] = {
            "api": self.api,
            "model": self.served.name,
            "version": self.served.version,
            "stream": self.stream,
            "choices": len(self.choices),
            "finished_choices": tally.finished_choices,
            "finish_reasons": tally.finish_reasons,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": tally.completion_tokens,
            "time_budget_exhausted": tally.time_budget_exhausted,
            "duration_ms": duration_ms,
        }
        if tally.first_token_at is not None:
            first_token_ms = round((tally.first_token_at - self.started) * 1000, 1)
            summary["time_to_first_token_ms"] = first_token_ms
            decode_seconds = ended - tally.first_token_at
            if decode_seconds > 0 and tally.completion_tokens > 1:
                summary["decode_tokens_per_s"] = round((tally.completion_tokens - 1) / decode_seconds, 1)
            metrics.add_metric(name="TimeToFirstTokenMs", unit=MetricUnit.Milliseconds, value=first_token_ms)
        metrics.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=self.prompt_tokens)
        metrics.add_metric(name="CompletionTokens", unit=MetricUnit.Count, value=tally.completion_tokens)
        metrics.add_metric(name="GenerationMs", unit=MetricUnit.Milliseconds, value=duration_ms)
        if tally.time_budget_exhausted:
            metrics.add_metric(name="TimeBudgetExhausted", unit=MetricUnit.Count, value=1)
            logger.warning("generation stopped at its time budget", extra=summary)
        elif tally.finished_choices < len(self.choices):
            # The client went away mid-stream (or a step failed): the generator was closed early.
            logger.info("generation abandoned", extra=summary)
        else:
            logger.info("generation finished", extra=summary)
