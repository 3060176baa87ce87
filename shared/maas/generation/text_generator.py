"""One loaded text generator: its tokenizer, chat template and decoder, and the generation loop.

The loop: prefill the prompt, then for each token sample, detokenize, hold back what could be a stop
string, and yield what is final. It ends on an end-of-sequence token or a stop string ("stop"), on
max_tokens or the deadline ("length").
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from maas.errors import InvalidInput
from maas.generation.decoder import DecoderSession
from maas.generation.detokenizer import IncrementalDetokenizer, TokenTexts
from maas.generation.events import Finished, FinishReason, GenerationEvent, TextDelta, TokenLogprob
from maas.generation.sampling import SamplingParams, TokenSampler, token_logprobs
from maas.generation.stop_strings import StopStringMatcher
from maas.registry.manifest import Generation, Manifest
from maas.runtime import session_memory_bytes

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from maas.generation.chat_template import ChatTemplate


class TextGenerator:
    """One loaded version of a text generator. Threads may share it: each generation has its own cache,
    sampler and detokenizer, and onnxruntime sessions and tokenizers run concurrently."""

    def __init__(
        self,
        manifest: Manifest,
        decoder: DecoderSession,
        tokenizer: Tokenizer,
        chat_template: ChatTemplate | None,
    ) -> None:
        self.manifest = manifest
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.token_texts = TokenTexts(tokenizer)
        self._eos = frozenset(self.generation.eos_token_ids)

    @property
    def generation(self) -> Generation:
        return self.decoder.generation

    @property
    def context_length(self) -> int:
        return self.generation.context_length

    @property
    def size_bytes(self) -> int:
        """What the model cache and the memory budget count: the resident memory its load measurably added
        (session and warm-up), never less than the version's artifacts (a request's KV cache comes and
        goes)."""
        return session_memory_bytes(self.decoder.session, floor=self.manifest.total_bytes)

    def encode(self, text: str) -> list[int]:
        """The text's token ids as the model reads them. No special tokens are added: a chat template
        writes its own, and a completion prompt is taken as it is (transformers' apply_chat_template and
        vLLM's chat path do the same)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` without special tokens, as a completion's text shows them."""
        return str(self.tokenizer.decode(list(ids)))

    def render_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise InvalidInput(
                f"messages: model '{self.manifest.name}' v{self.manifest.version} has no chat template; "
                "expected a prompt instead of messages"
            )
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt)

    def generate(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        deadline: float | None = None,
    ) -> Iterator[GenerationEvent]:
        """Text deltas as they become final, then one Finished. `deadline` is on time.monotonic().

        The prompt and the budget are checked here, before the first event is asked for."""
        prompt = [int(token) for token in prompt_ids]
        self._check_prompt(prompt, params)
        return self._events(prompt, params, deadline)

    def _check_prompt(self, prompt: list[int], params: SamplingParams) -> None:
        if not prompt:
            raise InvalidInput("prompt: expected at least one token, got none")
        vocab = self.decoder.vocab_size
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise InvalidInput(f"prompt: expected token ids in [0, {vocab}), got one outside")
        if len(prompt) + params.max_tokens > self.context_length:
            raise InvalidInput(
                f"max_tokens: the prompt's {len(prompt)} tokens plus max_tokens {params.max_tokens} exceed "
                f"the model's context of {self.context_length} tokens"
            )

    def _events(
        self, prompt: list[int], params: SamplingParams, deadline: float | None
    ) -> Iterator[GenerationEvent]:
        loop = _Loop(self, prompt, params)
        if _passed(deadline):
            yield Finished("length", len(prompt), 0, time_budget_exhausted=True)
            return
        run = self.decoder.start(len(prompt) + params.max_tokens)
        logits = run.prefill(prompt, deadline=deadline)
        if logits is None:  # a long prompt's prefill used up the time budget
            yield Finished("length", len(prompt), 0, time_budget_exhausted=True)
            return
        while True:
            token = loop.sample(logits)
            if token in self._eos:
                yield from loop.finish("stop")
                return
            delta = loop.push(token)
            if delta is not None:
                yield delta
            if loop.stopped:
                yield loop.finished("stop")
                return
            if loop.completion_tokens == params.max_tokens:
                yield from loop.finish("length")
                return
            if _passed(deadline):
                yield from loop.finish("length", time_budget_exhausted=True)
                return
            logits = run.step(token)

    def warm_up(self) -> None:
        """One prefill and one step: onnxruntime allocates its arenas and picks kernels on the first runs,
        which would otherwise land on a user's first request."""
        for _ in self.generate([0], SamplingParams(max_tokens=2, temperature=0)):
            pass


class _Loop:
    """One generation's state between tokens: what was sampled, and what text and tokens await a delta."""

    def __init__(self, generator: TextGenerator, prompt: list[int], params: SamplingParams) -> None:
        self._generator = generator
        self._params = params
        self._prompt_tokens = len(prompt)
        self._sampler = TokenSampler(params)
        self._detokenizer = IncrementalDetokenizer(generator.tokenizer, prompt)
        self._stops = StopStringMatcher(params.stop)
        self._token_ids: list[int] = []
        self._logprobs: list[TokenLogprob] = []
        self.completion_tokens = 0
        self.stopped = False

    def sample(self, logits: npt.NDArray[Any]) -> int:
        token = self._sampler.choose(logits)
        self.completion_tokens += 1
        self._token_ids.append(token)
        if self._params.logprobs is not None:
            self._logprobs.append(self._token_logprob(logits, token, self._params.logprobs))
        return token

    def push(self, token: int) -> TextDelta | None:
        """The delta `token` releases, if any text became final."""
        released = self._stops.push(self._detokenizer.push(token))
        self.stopped = released.stopped
        if released.text or released.stopped:
            return self._delta(released.text)
        return None

    def finish(
        self, reason: FinishReason, *, time_budget_exhausted: bool = False
    ) -> Iterator[GenerationEvent]:
        """The held-back text, now final, and the Finished event. A stop string completed by the held text
        still ends it, and its reason becomes "stop"."""
        released = self._stops.push(self._detokenizer.flush())
        text = released.text if released.stopped else released.text + self._stops.flush()
        if text or self._token_ids:
            yield self._delta(text)
        if released.stopped:
            yield self.finished("stop")
        else:
            yield self.finished(reason, time_budget_exhausted)

    def finished(self, reason: FinishReason, time_budget_exhausted: bool = False) -> Finished:
        return Finished(reason, self._prompt_tokens, self.completion_tokens, time_budget_exhausted)

    def _delta(self, text: str) -> TextDelta:
        delta = TextDelta(text, tuple(self._token_ids), tuple(self._logprobs))
        self._token_ids.clear()
        self._logprobs.clear()
        return delta

    def _token_logprob(self, logits: npt.NDArray[Any], token: int, alternatives: int) -> TokenLogprob:
        texts = self._generator.token_texts
        measured = token_logprobs(logits, token, alternatives)
        return TokenLogprob(
            token=texts.text_of(token),
            logprob=measured.logprob,
            bytes=tuple(texts.bytes_of(token)),
            top=tuple((texts.text_of(alternative), logprob) for alternative, logprob in measured.top),
        )


def _passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
