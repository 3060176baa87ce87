"""Perturbation attributions in numpy alone: which features each evaluation replaces with the baseline,
and how the scores of those evaluations combine into one attribution per feature.

The methods are Captum's gradient-free ones, computed the same way, so their values agree with Captum's on
the torch model: FeatureAblation, Occlusion, ShapleyValueSampling and ShapleyValues (all permutations).

A plan lists its evaluations as boolean masks over a row's elements (True: take the baseline there). Masks
repeat across permutations, so a plan evaluates each distinct mask once: exact Shapley values over 6
feature groups walk 720 permutations yet need only the 64 coalitions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Exact Shapley values walk every permutation of the feature groups: 6! = 720, over 2**6 = 64 coalitions.
MAX_EXACT_GROUPS = 6


@dataclass(frozen=True, eq=False)
class Plan:
    """The distinct masks a method evaluates, and how to fold their scores into attributions.

    `masks` is [U, E]: U distinct evaluations over a row's E elements, True where the baseline replaces the
    input. Row 0 is always the unperturbed input."""

    masks: BoolArray
    combine: _Combiner

    @property
    def evaluations_per_row(self) -> int:
        return len(self.masks)

    def attributions(self, scores: FloatArray) -> FloatArray:
        """[N, U] scores (the target output of each row under each mask) -> [N, E] attributions."""
        return self.combine(scores)


class _Combiner:
    def __call__(self, scores: FloatArray) -> FloatArray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class _Ablation(_Combiner):
    # element -> group, and the mask row that ablates each group.
    element_group: IntArray
    group_row: IntArray

    def __call__(self, scores: FloatArray) -> FloatArray:
        # Captum's FeatureAblation: the score lost when a group takes the baseline, on every element of it.
        per_group: FloatArray = scores[:, :1] - scores[:, self.group_row]
        return per_group[:, self.element_group]


@dataclass(frozen=True, eq=False)
class _Windows(_Combiner):
    # [W, E]: which elements each window covers; window w is mask row w + 1.
    windows: BoolArray

    def __call__(self, scores: FloatArray) -> FloatArray:
        # Captum's Occlusion: each element gets the mean score lost over the windows that cover it.
        lost = scores[:, :1] - scores[:, 1:]
        covered = self.windows.sum(axis=0)
        total: FloatArray = lost @ self.windows.astype(np.float64)
        # An element no window covers (the stride skipped it) was never perturbed: 0, not 0/0.
        np.divide(total, covered, out=total, where=covered > 0)
        return total


@dataclass(frozen=True, eq=False)
class _Permutations(_Combiner):
    element_group: IntArray
    # [P, G]: the order groups join the coalition in each permutation.
    permutations: IntArray
    # [P, G + 1]: the mask row of the coalition after k groups have joined (k = 0: all baseline).
    coalition_row: IntArray

    def __call__(self, scores: FloatArray) -> FloatArray:
        rows, groups = len(scores), self.permutations.shape[1]
        along = scores[:, self.coalition_row]  # [N, P, G + 1]
        # The marginal contribution of the k-th group to join, in each permutation.
        gained = along[:, :, 1:] - along[:, :, :-1]
        per_group = np.zeros((rows, groups))
        for step in range(groups):
            np.add.at(per_group.T, self.permutations[:, step], gained[:, :, step].T)
        per_group /= len(self.permutations)
        return per_group[:, self.element_group]


def group_ids(element_group: IntArray) -> int:
    return int(element_group.max()) + 1 if element_group.size else 0


def ablation_plan(element_group: IntArray) -> Plan:
    """One evaluation per feature group with that group at the baseline, plus the unperturbed input."""
    groups = group_ids(element_group)
    masks = np.zeros((groups + 1, element_group.size), dtype=bool)
    masks[1:] = element_group[None, :] == np.arange(groups)[:, None]
    return Plan(masks, _Ablation(element_group, np.arange(1, groups + 1)))


def shapley_plan(element_group: IntArray, permutations: IntArray) -> Plan:
    """Shapley value sampling over the given permutations of the feature groups (Captum's algorithm):
    start from the baseline, add the groups in each permutation's order, and credit each group with the
    score it adds. Every permutation of at most MAX_EXACT_GROUPS groups gives the exact Shapley values."""
    count, groups = permutations.shape
    # rank[p, g]: the step at which group g joins in permutation p.
    rank = np.empty_like(permutations)
    rank[np.arange(count)[:, None], permutations] = np.arange(groups)[None, :]
    # present[p, k, g]: after k steps, group g has joined.
    present = rank[:, None, :] < np.arange(groups + 1)[None, :, None]
    candidates = np.concatenate([np.ones((1, groups), dtype=bool), present.reshape(-1, groups)])
    _, first, inverse = np.unique(
        np.packbits(candidates, axis=1), axis=0, return_index=True, return_inverse=True
    )
    # Distinct coalitions in the order they first appear, so row 0 is the unperturbed input.
    order = np.argsort(first)
    row_of_distinct = np.empty_like(order)
    row_of_distinct[order] = np.arange(len(order))
    row_of_candidate = row_of_distinct[inverse.reshape(-1)]
    masks = ~candidates[first[order]][:, element_group]
    return Plan(
        masks, _Permutations(element_group, permutations, row_of_candidate[1:].reshape(count, groups + 1))
    )


def all_permutations(groups: int) -> IntArray:
    return np.array(list(itertools.permutations(range(groups))), dtype=np.int64).reshape(-1, groups)


def sampled_permutations(groups: int, samples: int, seed: int) -> IntArray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(groups) for _ in range(samples)]).astype(np.int64).reshape(-1, groups)


def occlusion_plan(row_shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> Plan:
    """Slide a window over a row (Captum's Occlusion) with the given strides; positions start at 0 and
    step by the stride while the window fits."""
    starts = [
        range(0, size - span + 1, step) for size, span, step in zip(row_shape, window, stride, strict=True)
    ]
    elements = math.prod(row_shape)
    positions = list(itertools.product(*starts))
    windows = np.zeros((len(positions), *row_shape), dtype=bool)
    for index, corner in enumerate(positions):
        covered = tuple(slice(at, at + span) for at, span in zip(corner, window, strict=True))
        windows[index][covered] = True
    flat = windows.reshape(len(positions), elements)
    masks = np.concatenate([np.zeros((1, elements), dtype=bool), flat])
    return Plan(masks, _Windows(flat))


def window_count(row_shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> int:
    return math.prod(
        (size - span) // step + 1 for size, span, step in zip(row_shape, window, stride, strict=True)
    )


def token_masks(content_positions: Sequence[int], width: int) -> BoolArray:
    """Token ablation for one text: the unperturbed ids, then one evaluation per content token."""
    masks = np.zeros((len(content_positions) + 1, width), dtype=bool)
    masks[np.arange(1, len(content_positions) + 1), list(content_positions)] = True
    return masks
