"""Held-out perplexity in strided windows: every token but the first scored once, within the context."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from maas.training.llm.perplexity import heldout_text, perplexity, windows


@pytest.mark.parametrize(
    ("count", "window", "stride"),
    [(2, 4, 2), (4, 4, 2), (5, 4, 2), (10, 4, 2), (9, 4, 3), (9, 2, 1), (1000, 256, 128)],
)
def test_windows_score_every_token_but_the_first_exactly_once(count: int, window: int, stride: int) -> None:
    spans = windows(count, window, stride)

    scored = [token for _, end, first in spans for token in range(first, end)]
    assert scored == list(range(1, count))
    assert all(end - start <= window for start, end, _ in spans)
    # Each scored token is predicted from at least one earlier token inside its own window.
    assert all(start < first for start, _, first in spans)


def test_a_stride_as_long_as_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        windows(10, 4, 4)


def test_a_model_that_knows_nothing_has_the_vocabulary_as_perplexity() -> None:
    def uniform(ids: Sequence[int]) -> np.ndarray:
        return np.zeros((len(ids), 50), dtype=np.float32)

    measured = perplexity(uniform, list(range(40)), context_length=8)

    assert measured.value == pytest.approx(50)
    assert measured.scored_tokens == 39
    assert (measured.window, measured.stride) == (8, 4)


def test_a_model_that_predicts_every_next_token_has_perplexity_one() -> None:
    def counting(ids: Sequence[int]) -> np.ndarray:
        # A text that counts up: each token's successor is the token plus one.
        logits = np.full((len(ids), 64), -1e4, dtype=np.float32)
        logits[np.arange(len(ids)), np.asarray(ids) + 1] = 0.0
        return logits

    assert perplexity(counting, list(range(40)), context_length=8).value == pytest.approx(1.0)


def test_the_held_out_text_is_a_few_thousand_words_of_english() -> None:
    words = heldout_text().split()

    assert 2500 <= len(words) <= 5000
    assert math.isclose(sum(word.isascii() for word in words) / len(words), 1.0, abs_tol=0.01)
