"""Perturbation attributions in numpy alone: which elements each evaluation replaces with the baseline,
and how the scores of those evaluations combine into one attribution per element.

The methods are Captum's gradient-free ones, computed the same way, so their values agree with Captum's on
the torch model: FeatureAblation, Occlusion, ShapleyValueSampling and ShapleyValues (all permutations).

A plan numbers its evaluations 0..U-1 (0 is always the unperturbed input) and builds the masks of any
slice of them on demand: a row can have many elements, and all U masks at once could outgrow the function's
memory. Shapley permutations repeat coalitions, so a plan evaluates each distinct coalition once: exact
Shapley values over 6 feature groups walk 720 permutations yet need only the 64 coalitions.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Exact Shapley values walk every permutation of the feature groups: 6! = 720, over 2**6 = 64 coalitions.
MAX_EXACT_GROUPS = 6


class Plan(ABC):
    """The evaluations a method needs for one row, and how their scores fold into attributions."""

    evaluations_per_row: int

    @abstractmethod
    def masks(self, evaluations: IntArray) -> BoolArray:
        """[n, E]: True where evaluation i puts the baseline in place of the input."""

    @abstractmethod
    def attributions(self, scores: FloatArray) -> FloatArray:
        """[N, U] scores (each row's target output under each evaluation) -> [N, E] attributions."""


class AblationPlan(Plan):
    """Captum's FeatureAblation: the score lost when a group takes the baseline, on every element of it."""

    def __init__(self, element_group: IntArray) -> None:
        self.element_group = element_group
        self.evaluations_per_row = group_count(element_group) + 1

    def masks(self, evaluations: IntArray) -> BoolArray:
        # Evaluation g + 1 ablates group g; evaluation 0 matches no group.
        masks: BoolArray = self.element_group[None, :] == (evaluations - 1)[:, None]
        return masks

    def attributions(self, scores: FloatArray) -> FloatArray:
        per_group: FloatArray = scores[:, :1] - scores[:, 1:]
        return per_group[:, self.element_group]


class ShapleyPlan(Plan):
    """Shapley value sampling over the given permutations of the feature groups (Captum's algorithm):
    start from the baseline, add the groups in each permutation's order, and credit each group with the
    score it adds. Every permutation of at most MAX_EXACT_GROUPS groups gives the exact Shapley values."""

    def __init__(self, element_group: IntArray, permutations: IntArray) -> None:
        count, groups = permutations.shape
        self.element_group = element_group
        self.permutations = permutations
        # rank[p, g]: the step at which group g joins in permutation p.
        rank = np.empty_like(permutations)
        rank[np.arange(count)[:, None], permutations] = np.arange(groups)[None, :]
        # After k steps of permutation p, the groups of rank < k are present.
        present = rank[:, None, :] < np.arange(groups + 1)[None, :, None]
        candidates = np.concatenate([np.ones((1, groups), dtype=bool), present.reshape(-1, groups)])
        _, first, inverse = np.unique(
            np.packbits(candidates, axis=1), axis=0, return_index=True, return_inverse=True
        )
        # Distinct coalitions in the order they first appear, so evaluation 0 is the unperturbed input.
        order = np.argsort(first)
        evaluation_of_distinct = np.empty_like(order)
        evaluation_of_distinct[order] = np.arange(len(order))
        evaluation_of_candidate = evaluation_of_distinct[inverse.reshape(-1)]
        self.coalitions: BoolArray = candidates[first[order]]
        self.evaluations_per_row = len(self.coalitions)
        # [P, G + 1]: the evaluation of permutation p's coalition after k steps (k = 0: all baseline).
        steps = evaluation_of_candidate[1:].reshape(count, groups + 1)
        # Each step credits the group that joins with (score after) - (score before). Summed over every
        # permutation that is one fixed [U, G] weight matrix, so attributions are scores @ weights / P,
        # whatever the number of rows or permutations.
        weights = np.zeros((self.evaluations_per_row, groups))
        np.add.at(weights, (steps[:, 1:], permutations), 1.0)
        np.add.at(weights, (steps[:, :-1], permutations), -1.0)
        self.weights: FloatArray = weights / count

    def masks(self, evaluations: IntArray) -> BoolArray:
        masks: BoolArray = ~self.coalitions[evaluations][:, self.element_group]
        return masks

    def attributions(self, scores: FloatArray) -> FloatArray:
        per_group: FloatArray = scores @ self.weights
        return per_group[:, self.element_group]


class OcclusionPlan(Plan):
    """Captum's Occlusion: a window starts at every multiple of the stride until one reaches the row's end
    (that last one cropped at the edge); each element gets the mean score lost over the windows covering
    it."""

    def __init__(self, row_shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> None:
        self.row_shape = tuple(row_shape)
        self.window = tuple(window)
        starts = [
            range(0, step * positions, step)
            for positions, step in zip(window_positions(row_shape, window, stride), stride, strict=True)
        ]
        self.corners = np.array(list(itertools.product(*starts)), dtype=np.int64).reshape(-1, len(row_shape))
        self.evaluations_per_row = len(self.corners) + 1

    def _region(self, window: int) -> tuple[slice, ...]:
        corner = self.corners[window]
        return tuple(slice(int(at), int(at) + span) for at, span in zip(corner, self.window, strict=True))

    def masks(self, evaluations: IntArray) -> BoolArray:
        masks = np.zeros((len(evaluations), *self.row_shape), dtype=bool)
        for index, evaluation in enumerate(evaluations.tolist()):
            if evaluation > 0:
                masks[index][self._region(evaluation - 1)] = True
        return masks.reshape(len(evaluations), -1)

    def attributions(self, scores: FloatArray) -> FloatArray:
        rows = len(scores)
        lost = scores[:, :1] - scores[:, 1:]
        total = np.zeros((rows, *self.row_shape))
        covered = np.zeros(self.row_shape)
        for window in range(len(self.corners)):
            region = self._region(window)
            total[(slice(None), *region)] += lost[:, window].reshape(rows, *([1] * len(self.row_shape)))
            covered[region] += 1
        # Every element is covered when the stride is at most the window, which the explainer requires.
        np.divide(total, covered, out=total, where=covered > 0)
        flat: FloatArray = total.reshape(rows, -1)
        return flat


def group_count(element_group: IntArray) -> int:
    return int(element_group.max()) + 1 if element_group.size else 0


def all_permutations(groups: int) -> IntArray:
    return np.array(list(itertools.permutations(range(groups))), dtype=np.int64).reshape(-1, groups)


def sampled_permutations(groups: int, samples: int, seed: int) -> IntArray:
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((samples, groups)), axis=1).astype(np.int64)


def shapley_evaluations_bound(groups: int, samples: int) -> int:
    """At most this many distinct coalitions: the unperturbed input, the baseline and each permutation's
    G - 1 steps between them, and never more than the 2**G coalitions there are."""
    walked = samples * max(groups - 1, 0) + 2
    return walked if groups >= 63 else min(walked, 2**groups)


def window_positions(row_shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> list[int]:
    """Window positions along each dimension, as Captum counts them: ceil((size - window) / stride) + 1."""
    return [-(-(size - span) // step) + 1 for size, span, step in zip(row_shape, window, stride, strict=True)]


def occlusion_windows(row_shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> int:
    return math.prod(window_positions(row_shape, window, stride))
