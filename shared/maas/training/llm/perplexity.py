"""Perplexity of a causal LM over a long text, in strided windows that never exceed the model's context.

The text is tokenized as is (no special tokens). Window w covers tokens [start, start + W) and is run
in one prefill with an empty cache; it scores only the tokens that no earlier window scored, each
predicted from everything before it in the window. With stride S = W / 2, every scored token after the
first window sees at least S tokens of context (the first window's tokens see what precedes them). The
very first token has no prediction and is not scored. Perplexity = exp(mean negative log-likelihood
over the scored tokens), accumulated in float64.

This is the sliding-window evaluation Hugging Face documents for fixed-length models; W is capped (1,024
by default) so the logits of one window stay a few hundred MB for a 49k vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

HELDOUT_TEXT_FILE = "heldout_english.txt"
DEFAULT_MAX_WINDOW = 1024

Logits = Callable[[Sequence[int]], np.ndarray]


@dataclass(frozen=True)
class Perplexity:
    value: float
    scored_tokens: int
    windows: int
    window: int
    stride: int


def heldout_text() -> str:
    """Original English prose written for this recipe and shipped with it; no model has trained on it."""
    return (resources.files("maas.training.llm") / HELDOUT_TEXT_FILE).read_text(encoding="utf-8")


def windows(count: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first scored position) for each window over `count` tokens."""
    # stride < window: the first token a window scores needs a position before it in that window.
    if not 0 < stride < window:
        raise ValueError(f"stride: expected 0 < stride < window ({window}), got {stride}")
    spans: list[tuple[int, int, int]] = []
    scored_until = 1
    start = 0
    while scored_until < count:
        end = min(start + window, count)
        spans.append((start, end, scored_until))
        scored_until = end
        start = max(0, end - (window - stride)) if end < count else end
    return spans


def perplexity(
    logits: Logits, token_ids: Sequence[int], *, context_length: int, max_window: int = DEFAULT_MAX_WINDOW
) -> Perplexity:
    """Perplexity of `token_ids` under `logits` (a function from ids to [len(ids), vocab] logits)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    if len(ids) < 2:
        raise ValueError(f"perplexity: expected at least 2 tokens, got {len(ids)}")
    window = min(context_length, max_window)
    stride = max(1, window // 2)
    spans = windows(len(ids), window, stride)
    total = 0.0
    scored = 0
    for start, end, first in spans:
        window_logits = np.asarray(logits(ids[start:end].tolist()), dtype=np.float64)
        # Position p predicts token p + 1, so token t is scored by the logits at t - 1 (window-relative).
        predictors = window_logits[first - 1 - start : end - 1 - start]
        targets = ids[first:end]
        peak = predictors.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(predictors - peak).sum(axis=1))
        total += float(np.sum(log_norm - predictors[np.arange(len(targets)), targets]))
        scored += len(targets)
    value = math.exp(total / scored) if math.isfinite(total) else math.inf
    return Perplexity(value=value, scored_tokens=scored, windows=len(spans), window=window, stride=stride)
