"""What an exported decoder must show before it is published, measured on held-out data.

- Logit parity (fp32): the same held-out token windows through transformers and onnxruntime, max |Δlogit|
  within `PARITY_TOLERANCE`.
- Greedy identity (fp32): the first `GREEDY_TOKENS` argmax tokens of each of `GREEDY_PROMPTS` (one-turn
  chats, rendered by the model's own template) identical to transformers' `generate(do_sample=False)`.
- Greedy agreement (quantized, against fp32): teacher-forced. The quantized graph reads each prompt
  followed by fp32's greedy reply in one prefill, and agreement is the share of those reply positions
  where its argmax is fp32's token. Free-running comparison would count every token after the first
  divergence as a miss, however close the two models are; teacher forcing scores each step on its own.
  The free-running identical prefix is reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from maas.registry import Parity
from maas.training.export import compare_outputs

PARITY_TOLERANCE = 1e-3
PARITY_WINDOWS = 4
PARITY_WINDOW_TOKENS = 128
GREEDY_TOKENS = 32
GREEDY_PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three fruits that are red.",
    "How do I boil an egg?",
)

Logits = Callable[[Sequence[int]], np.ndarray]
Greedy = Callable[[Sequence[int], int], list[int]]


@dataclass(frozen=True)
class GreedyComparison:
    """Two decoders' greedy replies to the same prompts, position by position."""

    reference: list[list[int]]
    candidate: list[list[int]]

    @property
    def identical(self) -> bool:
        return self.reference == self.candidate

    @property
    def identical_prefix_tokens(self) -> int:
        """Tokens, summed over the prompts, before the two replies first differ."""
        total = 0
        for want, got in zip(self.reference, self.candidate, strict=True):
            same = 0
            while same < min(len(want), len(got)) and want[same] == got[same]:
                same += 1
            total += same
        return total

    @property
    def reference_tokens(self) -> int:
        return sum(len(reply) for reply in self.reference)


def parity_windows(
    token_ids: Sequence[int], count: int = PARITY_WINDOWS, length: int = PARITY_WINDOW_TOKENS
) -> list[list[int]]:
    """`count` windows of `length` tokens, evenly spread over the held-out text."""
    length = min(length, len(token_ids))
    last_start = len(token_ids) - length
    starts = sorted({round(i * last_start / max(1, count - 1)) for i in range(count)})
    return [list(token_ids[start : start + length]) for start in starts]


def logit_parity(
    reference: Logits,
    candidate: Logits,
    windows: Sequence[Sequence[int]],
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> Parity:
    """Max |Δlogit| over every position of every window; samples = the number of windows."""
    want = np.stack([reference(window) for window in windows])
    got = np.stack([candidate(window) for window in windows])
    return compare_outputs([want], [got], ["logits"], tolerance=tolerance)


def greedy_replies(
    greedy: Greedy, prompts: Sequence[Sequence[int]], max_tokens: int = GREEDY_TOKENS
) -> list[list[int]]:
    return [greedy(prompt, max_tokens) for prompt in prompts]


def teacher_forced_agreement(
    candidate: Logits, prompts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]]
) -> float:
    """The share of the reply tokens the candidate predicts (argmax) when fed the prompt and the reply so
    far; 1.0 for empty replies."""
    agreed = 0
    total = 0
    for prompt, reply in zip(prompts, replies, strict=True):
        if not reply:
            continue
        logits = candidate([*prompt, *reply[:-1]])
        predicted = np.argmax(logits[len(prompt) - 1 :], axis=-1)
        agreed += int(np.sum(predicted == np.asarray(reply)))
        total += len(reply)
    return agreed / total if total else 1.0
