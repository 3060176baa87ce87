"""Triton's generate extension answers assembled from a run's events: one whole `text_output`, or one event
per decoded piece and a last one that says why generation ended and what it used."""

from __future__ import annotations

from collections.abc import Iterator

from maas.protocol.generate_types import GenerateResponse
from maas.service.completions_runs import ChoiceDelta, ChoiceFinished, GenerationRun


class GenerateRun:
    """A checked generate request (one prompt, one choice), answered whole or as events."""

    def __init__(self, run: GenerationRun, request_id: str | None) -> None:
        self.run = run
        self.stream = run.stream
        self.request_id = request_id

    def response(self) -> GenerateResponse:
        pieces = []
        finish_reason = None
        for event in self.run.events():
            if isinstance(event, ChoiceDelta):
                pieces.append(event.delta.text)
            elif isinstance(event, ChoiceFinished):
                finish_reason = event.finished.finish_reason
        return self._answer("".join(pieces), last=True, finish_reason=finish_reason)

    def chunks(self) -> Iterator[GenerateResponse]:
        for event in self.run.events():
            if isinstance(event, ChoiceDelta) and event.delta.text:
                yield self._answer(event.delta.text)
            elif isinstance(event, ChoiceFinished):
                yield self._answer("", last=True, finish_reason=event.finished.finish_reason)

    def _answer(self, text: str, *, last: bool = False, finish_reason: str | None = None) -> GenerateResponse:
        served = self.run.served
        answer = GenerateResponse(
            id=self.request_id,
            model_name=served.name,
            model_version=str(served.version),
            text_output=text,
        )
        if not last:
            return answer
        usage = self.run.usage()
        return answer.model_copy(
            update={
                "finish_reason": finish_reason,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "time_budget_exhausted": usage.time_budget_exhausted,
            }
        )
