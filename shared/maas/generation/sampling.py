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
# A nucleus is looked for among this many most likely tokens first, then this many: partitioning 49,152
# probabilities takes 0.2 ms, sorting them all 3 ms, a tenth of a decode step.
NUCLEUS_LOOKS = (256, 4096)

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
        # The most likely token survives every cut, so the largest scaled logit is still 0.
        cumulative = np.cumsum(np.exp(scaled))
        drawn = min(
            int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right")),
            len(scaled) - 1,
        )
        return drawn if ids is None else int(ids[drawn])

    def _candidates(
        self, scaled: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.intp] | None, npt.NDArray[np.float64]]:
        """The token ids still in the draw after top-k and top-p (None: all of them), with their scaled
        logits."""
        ids: npt.NDArray[np.intp] | None = None
        top_k = self._params.top_k
        if 0 < top_k < len(scaled):
            # In id order, so that a tie for the top below goes to the lower id, as argmax breaks it.
            ids = np.sort(np.argpartition(scaled, -top_k)[-top_k:])
            scaled = scaled[ids]
        if self._params.top_p < 1:
            kept = _nucleus(scaled, self._params.top_p)
            ids = kept if ids is None else ids[kept]
            scaled = scaled[kept]
        return ids, scaled

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


def _nucleus(scaled: npt.NDArray[np.float64], top_p: float) -> npt.NDArray[np.intp]:
    """Positions in `scaled` of the smallest set of most likely tokens whose probability reaches top_p."""
    weights = np.exp(scaled)
    target = top_p * weights.sum()
    order = _most_likely_first(weights, target)
    cumulative = np.cumsum(weights[order])
    keep = int(np.searchsorted(cumulative, target, side="left")) + 1
    return order[: min(keep, len(order))]


def _most_likely_first(weights: npt.NDArray[np.float64], target: float) -> npt.NDArray[np.intp]:
    """Positions by descending weight, at least as many as reach `target`: the nucleus is a prefix of the
    sorted order, so it is looked for among the few most likely first, and only a flat distribution pays
    for sorting them all."""
    for look in NUCLEUS_LOOKS:
        if len(weights) > look:
            likely = np.argpartition(weights, -look)[-look:]
            if weights[likely].sum() >= target:
                return _descending(weights, likely)
    return _descending(weights, np.arange(len(weights)))


def _descending(values: npt.NDArray[np.float64], positions: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """`positions` by descending value. Ties for the top go to the lowest position, as argmax breaks them, so
    a cut to one token (a tiny top_p, one alternative) keeps exactly greedy's; other ties fall as they may."""
    order = positions[np.argsort(-values[positions])]
    tied = int(np.count_nonzero(values[order] == values[order[0]]))
    if tied > 1:
        order[:tied] = np.sort(order[:tied])
    return order


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
        likely = _descending(log_probs, np.argpartition(log_probs, -count)[-count:])
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
