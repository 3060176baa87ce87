"""Choosing tokens from logits: greedy and its equivalents, the cuts, seeds, logprobs, and logits extreme
enough to overflow a naive softmax."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from maas.errors import InvalidInput
from maas.generation.sampling import (
    LOGPROB_FLOOR,
    NUCLEUS_LOOKS,
    SamplingParams,
    TokenSampler,
    token_logprobs,
)

VOCAB = 1000
DRAWS = 400


def logits(seed: int = 0, vocab: int = VOCAB) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, vocab).astype(np.float32)


def draws(params: SamplingParams, values: np.ndarray, count: int = DRAWS) -> list[int]:
    sampler = TokenSampler(params)
    return [sampler.choose(values) for _ in range(count)]


def test_temperature_zero_takes_the_argmax_and_ties_go_to_the_lower_id() -> None:
    values = np.array([0.5, 2.0, -1.0, 2.0], np.float32)

    assert draws(SamplingParams(max_tokens=1, temperature=0), values, 3) == [1, 1, 1]


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=1, temperature=1.7, top_k=1, seed=3),
        SamplingParams(max_tokens=1, temperature=1.7, top_p=1e-9, seed=3),
    ],
    ids=["top_k=1", "tiny top_p"],
)
@pytest.mark.parametrize("vocab", [8, 2 * NUCLEUS_LOOKS[0]], ids=["small", "beyond-the-first-look"])
def test_cuts_to_one_token_choose_what_greedy_chooses_ties_included(
    params: SamplingParams, vocab: int
) -> None:
    values = logits(1, vocab)
    values[vocab // 2] = values[vocab // 3] = values.max() + 1  # a tie for the top

    assert set(draws(params, values, 50)) == {vocab // 3}


def test_the_same_seed_draws_the_same_tokens_and_another_seed_others() -> None:
    values = logits()

    first = draws(SamplingParams(max_tokens=1, seed=7), values)

    assert draws(SamplingParams(max_tokens=1, seed=7), values) == first
    assert draws(SamplingParams(max_tokens=1, seed=8), values) != first


def test_top_k_draws_only_among_the_k_most_likely() -> None:
    values = logits()
    likely = set(np.argsort(-values)[:5].tolist())

    drawn = draws(SamplingParams(max_tokens=1, temperature=2.0, top_k=5, seed=1), values)

    assert set(drawn) <= likely
    assert len(set(drawn)) > 1


@pytest.mark.parametrize(
    ("vocab", "peak", "spread", "nucleus_size"),
    [
        (VOCAB, 20.0, 1.0, range(2, 4)),
        (50_000, 20.0, 1.0, range(2, NUCLEUS_LOOKS[0])),
        (50_000, 0.0, 1.0, range(NUCLEUS_LOOKS[0], NUCLEUS_LOOKS[1])),
        (50_000, 0.0, 0.2, range(NUCLEUS_LOOKS[1], 50_000)),
    ],
    ids=["small-vocabulary", "first-look", "second-look", "flat-sorted-whole"],
)
def test_top_p_draws_only_from_the_smallest_set_reaching_p(
    vocab: int, peak: float, spread: float, nucleus_size: range
) -> None:
    values = logits(2, vocab) * spread
    values[:3] = np.maximum(values[:3], [peak, peak - 0.5, peak - 1.0])  # a peak makes the nucleus small
    probabilities = np.exp(values - values.max()) / np.exp(values - values.max()).sum()
    order = np.argsort(-probabilities)
    nucleus = order[: int(np.searchsorted(np.cumsum(probabilities[order]), 0.8)) + 1]
    assert len(nucleus) in nucleus_size

    drawn = draws(SamplingParams(max_tokens=1, top_p=0.8, seed=1), values, 100)

    assert set(drawn) <= set(nucleus.tolist())
    assert len(set(drawn)) > 1


def test_temperature_draws_in_proportion_to_the_softmax() -> None:
    values = np.log(np.array([0.6, 0.3, 0.1], np.float32))

    counts = Counter(draws(SamplingParams(max_tokens=1, temperature=1.0, seed=5), values, 3000))

    assert [round(counts[token] / 3000, 1) for token in range(3)] == [0.6, 0.3, 0.1]


@pytest.mark.parametrize(
    "values",
    [
        np.array([3e38, -3e38, 1.0, 3e38], np.float32),
        np.array([np.inf, 1.0, np.inf, -np.inf], np.float32),
        np.array([-np.inf, -np.inf, -np.inf], np.float32),
        np.array([np.nan, 2.0, np.nan, 1.0], np.float32),
        np.array([-3e38, -3e38, -3e38 + 1e32], np.float32),
    ],
    ids=["huge", "infinite", "all-minus-infinity", "nan", "all-hugely-negative"],
)
@pytest.mark.parametrize("temperature", [1e-30, 0.7, 2.0, 1e30])
@pytest.mark.parametrize("top_p", [1.0, 0.5])
def test_extreme_logits_never_give_nan_or_an_id_outside_the_vocabulary(
    values: np.ndarray, temperature: float, top_p: float
) -> None:
    with np.errstate(over="raise", invalid="raise"):  # an overflow or a NaN made on the way fails it
        drawn = draws(SamplingParams(max_tokens=1, temperature=temperature, top_p=top_p, seed=0), values, 20)
        reported = token_logprobs(values, drawn[0], 2)

    assert all(0 <= token < len(values) for token in drawn)
    assert math.isfinite(reported.logprob)
    assert all(math.isfinite(logprob) for _, logprob in reported.top)


def test_logprobs_are_the_models_log_softmax_whatever_the_sampling() -> None:
    values = logits(3)
    expected = values.astype(np.float64) - np.log(np.exp(values.astype(np.float64)).sum())
    token = int(np.argsort(-values)[4])

    reported = token_logprobs(values, token, 3)

    assert reported.logprob == pytest.approx(expected[token])
    top_ids = np.argsort(-values)[:3].tolist()
    assert [token for token, _ in reported.top] == top_ids
    assert [logprob for _, logprob in reported.top] == pytest.approx(expected[top_ids].tolist())


def test_a_token_the_model_rules_out_reports_the_floor_not_minus_infinity() -> None:
    values = np.array([0.0, -np.inf, 1.0], np.float32)

    assert token_logprobs(values, 1, 0) == token_logprobs(values, 1, 0)
    assert token_logprobs(values, 1, 0).logprob == LOGPROB_FLOOR
    assert token_logprobs(values, 1, 0).top == ()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"logprobs": 21}, "logprobs"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_parameters_sampling_cannot_mean_are_refused_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"^{named}:"):
        SamplingParams(**{"max_tokens": 4, **fields})  # type: ignore[arg-type]
