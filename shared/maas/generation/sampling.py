"""Choosing the next token from a step's logits, in numpy: greedy, temperature, top-k, top-p and a seed.

Sampling works in float64 on logits shifted by their maximum before the temperature divides them, so huge
logits, a tiny temperature or infinities never overflow into NaN. The order of the cuts follows
transformers' and vLLM's: temperature, then top-k, then top-p over what top-k left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.errors import InvalidInput

# OpenAI's top_logprobs ceiling.
MAX_LOGPROBS = 20
# Reported in place of -inf, which JSON cannot carry; OpenAI itself reports -9999.0 for such tokens.
LOGPROB_FLOOR = -9999.0
# A nucleus is looked for among this many most likely tokens first; only a flatter distribution than that
# pays for sorting the whole vocabulary (about 2 ms for 49,152 logits, a tenth of a decode step).
NUCLEUS_FIRST_LOOK = 256

Logits = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one completion is decoded. The service checks clients' ranges (temperature within [0, 2], ...);
    this refuses only what sampling cannot mean, naming the field."""

    max_tokens: int
    # 0: greedy, the most likely token every step.
    temperature: float = 1.0
    top_p: float = 1.0
    # 0: no top-k cut.
    top_k: int = 0
    # None: fresh entropy each generation.
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # None: no logprobs; else how many alternatives each token reports beside itself (0..20).
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidInput(f"max_tokens: expected at least 1, got {self.max_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise InvalidInput(f"temperature: expected a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p: expected a number in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k: expected 0 (off) or more, got {self.top_k}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise InvalidInput(f"logprobs: expected 0 to {MAX_LOGPROBS} alternatives, got {self.logprobs}")
        if any(not stop for stop in self.stop):
            raise InvalidInput("stop: expected non-empty strings, got an empty one")

    @property
    def greedy(self) -> bool:
        # top_k=1 keeps only the most likely token whatever the temperature: the same choice as greedy,
        # made the same way, ties included.
        return self.temperature == 0 or self.top_k == 1


class TokenSampler:
    """The token choices of one generation; its random generator carries the seed from step to step."""

    def __init__(self, params: SamplingParams) -> None:
        self._params = params
        self._rng = np.random.default_rng(params.seed)

    def choose(self, logits: Logits) -> int:
        """The next token id from one position's logits [vocab]."""
        if self._params.greedy:
            return int(np.argmax(logits))
        shifted, finite = _shifted(logits)
        if not finite:
            return self._among_infinite(logits)
        with np.errstate(over="ignore"):  # a tiny temperature sends unlikely tokens to -inf, as it should
            scaled = shifted / self._params.temperature
        ids, scaled = self._candidates(scaled)
        weights = np.exp(scaled - scaled.max())
        cumulative = np.cumsum(weights)
        drawn = int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right"))
        return int(ids[min(drawn, len(ids) - 1)])

    def _candidates(
        self, scaled: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Token ids still in the draw after top-k and top-p, with their scaled logits."""
        ids = np.arange(scaled.shape[0])
        top_k = self._params.top_k
        if 0 < top_k < len(ids):
            ids = np.argpartition(scaled, -top_k)[-top_k:]
        if self._params.top_p >= 1:
            return ids, scaled[ids]
        ids = _nucleus(ids, scaled, self._params.top_p)
        return ids, scaled[ids]

    def _among_infinite(self, logits: Logits) -> int:
        """+inf logits share all the probability; with none left at all, the argmax stands."""
        infinite = np.flatnonzero(np.isposinf(logits))
        if len(infinite) == 0:
            return int(np.argmax(np.nan_to_num(logits, nan=-np.inf)))
        return int(infinite[self._rng.integers(len(infinite))])


def _shifted(logits: Logits) -> tuple[npt.NDArray[np.float64], bool]:
    """Logits in float64 minus their maximum (so <= 0), NaN as -inf; False where the maximum is infinite."""
    values = logits.astype(np.float64)
    values[np.isnan(values)] = -np.inf
    top = values.max()
    if not np.isfinite(top):
        return values, False
    with np.errstate(over="ignore"):
        values -= top
    return values, True


def _nucleus(
    ids: npt.NDArray[np.intp], scaled: npt.NDArray[np.float64], top_p: float
) -> npt.NDArray[np.intp]:
    """The smallest set of most likely `ids` whose probability (renormalized over `ids`) reaches top_p."""
    weights = np.exp(scaled[ids] - scaled[ids].max())
    total = weights.sum()
    order: npt.NDArray[np.intp] | None = None
    if len(ids) > NUCLEUS_FIRST_LOOK:
        likely = np.argpartition(weights, -NUCLEUS_FIRST_LOOK)[-NUCLEUS_FIRST_LOOK:]
        if weights[likely].sum() >= top_p * total:
            # The nucleus is a prefix of the sorted order, so it lies within these: sort only them.
            order = likely[_descending(weights[likely], ids[likely])]
    if order is None:
        order = _descending(weights, ids)
    cumulative = np.cumsum(weights[order])
    keep = int(np.searchsorted(cumulative, top_p * total, side="left")) + 1
    return ids[order[: min(keep, len(order))]]


def _descending(weights: npt.NDArray[np.float64], ids: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    # Ties go to the lower token id, as argmax breaks them: a tiny top_p then picks exactly greedy's token.
    return np.lexsort((ids, -weights))


@dataclass(frozen=True, slots=True)
class Logprobs:
    """The chosen token's log-probability and the `top` most likely (id, logprob), most likely first."""

    logprob: float
    top: tuple[tuple[int, float], ...]


def token_logprobs(logits: Logits, token_id: int, alternatives: int) -> Logprobs:
    """Log-probabilities under the model's own distribution: a log-softmax of the raw logits, before
    temperature, top-k and top-p. That is what OpenAI reports (the same numbers at any temperature), and
    what vLLM reports by default."""
    shifted, finite = _shifted(logits)
    log_probs = _log_softmax(shifted) if finite else _infinite_log_probs(shifted)
    top: tuple[tuple[int, float], ...] = ()
    if alternatives > 0:
        count = min(alternatives, len(log_probs))
        likely = np.argpartition(log_probs, -count)[-count:]
        likely = likely[_descending(log_probs[likely], likely)]
        top = tuple((int(index), _reportable(log_probs[index])) for index in likely)
    return Logprobs(_reportable(log_probs[token_id]), top)


def _log_softmax(shifted: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Shifted logits are <= 0 with a 0 among them, so the sum of exponentials is within [1, vocab].
    return shifted - math.log(float(np.exp(shifted).sum()))


def _infinite_log_probs(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    infinite = np.isposinf(values)
    count = int(infinite.sum())
    if count == 0:  # every logit -inf or NaN: nothing to prefer, so uniform
        return np.full(values.shape, -math.log(len(values)))
    return np.where(infinite, -math.log(count), -np.inf)


def _reportable(log_prob: float) -> float:
    return max(float(log_prob), LOGPROB_FLOOR)
