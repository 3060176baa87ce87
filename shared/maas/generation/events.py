"""What `TextGenerator.generate` yields: text as it becomes final, then one `Finished`.

Every sampled token appears in exactly one `TextDelta`'s `token_ids` (an end-of-sequence token too, with no
text), so the deltas' token counts add up to `Finished.completion_tokens`. A delta's text may belong to
earlier tokens than its own: text is held back while it could still be part of a stop string or of a
character whose bytes span tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token with its log-probability under the model, and the most likely alternatives.

    `token` is the token's own text (U+FFFD where it holds only part of a character), `bytes` its UTF-8
    bytes as OpenAI reports them, `top` up to the requested number of (text, logprob) alternatives, most
    likely first."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    token_ids: tuple[int, ...]
    # Empty unless the request asked for logprobs; then one per token id.
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every generation.

    `finish_reason` is "stop" for an end-of-sequence token or a stop string, "length" for max_tokens or the
    time budget; `time_budget_exhausted` tells those two apart."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_budget_exhausted: bool = False


GenerationEvent = TextDelta | Finished
