"""Perturbation attributions checked against answers worked out by hand, and against Shapley's axioms.

Given a tiny model written in numpy (a linear map, a product, a max), a plan's masks are applied as the
explainer applies them (True: the baseline replaces the input), the model scores every evaluation, and the
plan folds those scores into attributions. For these models the exact values are short sums on paper:
a linear model's every method gives w * (x - baseline); a product x0 * x1 is all lost when either factor
goes (ablation) but shared half and half (Shapley). Shapley values also satisfy efficiency exactly, for
sampled permutations as well as for all of them, since each permutation's credits telescope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from maas.explain.attribution import (
    MAX_EXACT_GROUPS,
    AblationPlan,
    FloatArray,
    IntArray,
    OcclusionPlan,
    Plan,
    ShapleyPlan,
    all_permutations,
    group_count,
    occlusion_windows,
    sampled_permutations,
    shapley_evaluations_bound,
    window_positions,
)

# [M, E] rows -> [M] scores: the model's target output for each row.
Model = Callable[[FloatArray], FloatArray]


def linear(weights: list[float], bias: float = 0.0) -> Model:
    w = np.asarray(weights, dtype=np.float64)
    return lambda rows: rows @ w + bias


def ascending(elements: int) -> Model:
    """sum(w * x) with w = 1, 2, ..., elements."""
    return linear(list(range(1, elements + 1)))


def product(rows: FloatArray) -> FloatArray:
    return rows[:, 0] * rows[:, 1]


def larger(rows: FloatArray) -> FloatArray:
    return np.maximum(rows[:, 0], rows[:, 1])


def product_plus_third(rows: FloatArray) -> FloatArray:
    return rows[:, 0] * rows[:, 1] + rows[:, 2]


def sum_of_first_two_times_third(rows: FloatArray) -> FloatArray:
    return (rows[:, 0] + rows[:, 1]) * rows[:, 2]


def tangled(rows: FloatArray) -> FloatArray:
    """Non-linear in every feature, with interactions: no method's answer is a simple sum here."""
    return np.sin(rows[:, 0]) * rows[:, 1] + rows[:, 2] ** 2 - rows[:, 0] * rows[:, 3] + np.tanh(rows[:, 4])


def identity_groups(elements: int) -> IntArray:
    return np.arange(elements, dtype=np.int64)


def groups_of(groups: int | list[int]) -> IntArray:
    """Each element's group: a count of elements each alone, or the groups listed."""
    return identity_groups(groups) if isinstance(groups, int) else np.asarray(groups, dtype=np.int64)


def ablation(groups: int | list[int]) -> AblationPlan:
    return AblationPlan(groups_of(groups))


def exact_shapley(groups: int | list[int]) -> ShapleyPlan:
    element_group = groups_of(groups)
    return ShapleyPlan(element_group, all_permutations(group_count(element_group)))


def sampled_shapley(groups: int, samples: int, seed: int) -> ShapleyPlan:
    return ShapleyPlan(identity_groups(groups), sampled_permutations(groups, samples, seed))


def attributions_of(plan: Plan, model: Model, inputs: FloatArray, baseline: FloatArray) -> FloatArray:
    """Every evaluation of the plan scored as the explainer scores it, folded into [N, E] attributions."""
    rows, elements = inputs.shape
    masks = plan.masks(np.arange(plan.evaluations_per_row, dtype=np.int64))
    mixed = np.where(masks[None, :, :], baseline[None, None, :], inputs[:, None, :])
    scores = model(mixed.reshape(-1, elements)).reshape(rows, plan.evaluations_per_row)
    return plan.attributions(scores)


def ones(elements: int) -> FloatArray:
    return np.ones((1, elements))


def zeros(elements: int) -> FloatArray:
    return np.zeros(elements)


@dataclass(frozen=True)
class Known:
    name: str
    plan: Plan
    model: Model
    inputs: Sequence[Sequence[float]]
    expected: Sequence[Sequence[float]]
    # None: zeros.
    baseline: Sequence[float] | None = None


NOT_ZERO = [1, 0.5, -1]
# ascending(3) on two rows against NOT_ZERO, w * (x - baseline) by hand.
TWO_ROWS, TWO_ROWS_EXPECTED = [[1, 1, 1], [5, -1, 0]], [[0, 1, 6], [4, -3, 3]]
KNOWN = [
    # A linear model: every method credits each feature with w * (x - baseline).
    Known("ablation-linear", ablation(4), linear([2, -1, 0.5, 3], 1), [[1, 2, 3, 4]], [[2, -2, 1.5, 12]]),
    Known("shapley-linear", exact_shapley(4), linear([2, -1, 0.5, 3], 1), [[1, 2, 3, 4]], [[2, -2, 1.5, 12]]),
    Known("ablation-baseline", ablation(3), ascending(3), TWO_ROWS, TWO_ROWS_EXPECTED, NOT_ZERO),
    # One sampled permutation is already exact for a linear model.
    Known("sampled-1", sampled_shapley(3, 1, 7), ascending(3), TWO_ROWS, TWO_ROWS_EXPECTED, NOT_ZERO),
    # x0 * x1 at (3, 4): either factor at 0 loses all 12; Shapley splits the 12 evenly.
    Known("ablation-product", ablation(2), product, [[3, 4]], [[12, 12]]),
    Known("shapley-product", exact_shapley(2), product, [[3, 4]], [[6, 6]]),
    # max(x0, x1) at (1, 3): dropping x0 changes nothing, dropping x1 falls to 1. Shapley averages the two
    # orders: x0 adds 1 - 0 or 3 - 3 (0.5); x1 adds 3 - 0 or 3 - 1 (2.5).
    Known("ablation-max", ablation(2), larger, [[1, 3]], [[0, 2]]),
    Known("shapley-max", exact_shapley(2), larger, [[1, 3]], [[0.5, 2.5]]),
    # x0 * x1 + x2 at (2, 3, 5): the product's 6 split 3 and 3, x2 alone adds its 5.
    Known("shapley-three-players", exact_shapley(3), product_plus_third, [[2, 3, 5]], [[3, 3, 5]]),
    # (x0 + x1) * x2 at (1, 2, 3) with x0 and x1 one group: two players whose product is 9. Every element
    # of a group gets the group's attribution.
    Known("ablation-groups", ablation([0, 0, 1]), sum_of_first_two_times_third, [[1, 2, 3]], [[9, 9, 9]]),
    Known("shapley-groups", exact_shapley([0, 0, 1]), sum_of_first_two_times_third, [[1, 2, 3]], [[4.5] * 3]),
    # Occlusion over a row of 4 with window 2, stride 1, on sum(w * x) with w = 1..4 and x = 1: windows at
    # 0, 1, 2 lose 3, 5, 7; each element gets the mean loss of the windows covering it.
    Known("occlusion-1d", OcclusionPlan((4,), (2,), (1,)), ascending(4), [[1] * 4], [[3, 4, 6, 7]]),
    # Window 2, stride 2 over 5: windows at 0, 2 and 4, the last cropped to one element.
    Known("occlusion-cropped", OcclusionPlan((5,), (2,), (2,)), ascending(5), [[1] * 5], [[3, 3, 7, 7, 5]]),
    # A 2x3 row, a 2x2 window: columns 0-1 lose 1 + 2 + 4 + 5 = 12, columns 1-2 lose 16; column 1 gets 14.
    Known("occlusion-2d", OcclusionPlan((2, 3), (2, 2), (1, 1)), ascending(6), [[1] * 6], [[12, 14, 16] * 2]),
]


@pytest.mark.parametrize("case", KNOWN, ids=[case.name for case in KNOWN])
def test_attributions_match_the_values_worked_out_by_hand(case: Known) -> None:
    # given a plan, a tiny model and its inputs and baseline
    inputs = np.asarray(case.inputs, dtype=np.float64)
    baseline = np.zeros(inputs.shape[1]) if case.baseline is None else np.asarray(case.baseline, dtype=float)

    # when every evaluation is scored and folded
    attributions = attributions_of(case.plan, case.model, inputs, baseline)

    # then each element's attribution is the one computed by hand
    np.testing.assert_allclose(attributions, np.asarray(case.expected), rtol=0, atol=1e-12)


SHAPLEY_PLANS = [
    ("exact", exact_shapley(5)),
    ("sampled-1", sampled_shapley(5, 1, seed=0)),
    ("sampled-25", sampled_shapley(5, 25, seed=3)),
]


@pytest.mark.parametrize(("name", "plan"), SHAPLEY_PLANS, ids=[name for name, _ in SHAPLEY_PLANS])
def test_shapley_values_add_up_to_the_change_from_baseline_to_input(name: str, plan: ShapleyPlan) -> None:
    # given a model with interactions, three rows and a baseline that is not zero
    inputs = np.random.default_rng(11).normal(size=(3, 5))
    baseline = np.array([0.5, -1.0, 0.25, 2.0, -0.5])

    # when Shapley values are computed, from every permutation or a sample of them
    attributions = attributions_of(plan, tangled, inputs, baseline)

    # then per row they sum to f(input) - f(baseline) (efficiency): each permutation's credits telescope
    expected = tangled(inputs) - tangled(baseline[None, :])
    np.testing.assert_allclose(attributions.sum(axis=1), expected, rtol=0, atol=1e-12)


def test_grouped_shapley_values_add_up_per_group() -> None:
    # given five features in three groups, numbered out of order
    element_group = groups_of([2, 0, 1, 0, 2])
    plan = exact_shapley(element_group.tolist())
    inputs = np.array([[0.3, -1.2, 2.0, 0.7, 1.5]])
    baseline = zeros(5)

    # when the groups' Shapley values are computed
    attributions = attributions_of(plan, tangled, inputs, baseline)

    # then every element of a group holds the group's value, and the three values add up to the change
    first_of_group = [int(np.flatnonzero(element_group == group)[0]) for group in range(3)]
    for group in range(3):
        members = attributions[0, element_group == group]
        np.testing.assert_array_equal(members, np.full(members.shape, members[0]))
    expected = tangled(inputs) - tangled(baseline[None, :])
    np.testing.assert_allclose(attributions[0, first_of_group].sum(), expected[0], rtol=0, atol=1e-12)


def test_exact_shapley_values_treat_symmetric_features_alike_and_ignore_unused_ones() -> None:
    # given f = x0 * x1 + x0 + x1, symmetric in x0 and x1, blind to x2, with x0 == x1
    def symmetric(rows: FloatArray) -> FloatArray:
        return rows[:, 0] * rows[:, 1] + rows[:, 0] + rows[:, 1]

    inputs = np.array([[2.0, 2.0, 9.0]])

    # when exact Shapley values are computed
    attributions = attributions_of(exact_shapley(3), symmetric, inputs, zeros(3))

    # then x0 and x1 share the change evenly (symmetry) and x2 gets nothing (null player)
    np.testing.assert_allclose(attributions, [[4.0, 4.0, 0.0]], rtol=0, atol=1e-12)


def test_sampled_shapley_values_from_every_permutation_are_the_exact_ones() -> None:
    # given all 120 permutations of 5 groups, once in order and once shuffled as a "sample"
    permutations = all_permutations(5)
    shuffled = permutations[np.random.default_rng(5).permutation(len(permutations))]
    inputs = np.array([[0.4, -0.8, 1.3, 2.1, -0.6]])

    # when each is the plan's list of permutations
    def attributions(given: IntArray) -> FloatArray:
        return attributions_of(ShapleyPlan(identity_groups(5), given), tangled, inputs, zeros(5))

    # then the order they are walked in changes nothing
    np.testing.assert_allclose(attributions(shuffled), attributions(permutations), rtol=0, atol=1e-12)


def test_the_first_evaluation_of_every_plan_is_the_unperturbed_input() -> None:
    # given one plan of each method over a row of six elements
    plans: list[Plan] = [
        ablation(6),
        exact_shapley([0, 0, 1, 1, 2, 2]),
        sampled_shapley(6, 3, seed=1),
        OcclusionPlan((2, 3), (1, 2), (1, 1)),
    ]

    for plan in plans:
        # when evaluation 0's mask is built
        mask = plan.masks(np.array([0], dtype=np.int64))

        # then it replaces nothing
        assert mask.shape == (1, 6)
        assert not mask.any()


def test_ablation_evaluation_g_plus_one_replaces_exactly_group_g() -> None:
    # given three groups over five elements
    element_group = np.array([1, 0, 2, 1, 0], dtype=np.int64)
    plan = AblationPlan(element_group)

    # when the masks of evaluations 1..3 are built
    masks = plan.masks(np.array([1, 2, 3], dtype=np.int64))

    # then each covers one group's elements and nothing else
    assert plan.evaluations_per_row == 4
    assert masks.tolist() == [
        [False, True, False, False, True],
        [True, False, False, True, False],
        [False, False, True, False, False],
    ]


@pytest.mark.parametrize("groups", range(1, MAX_EXACT_GROUPS + 1))
def test_exact_shapley_evaluates_each_of_the_2_to_the_g_coalitions_once(groups: int) -> None:
    # given every permutation of `groups` feature groups (720 for six)
    plan = exact_shapley(groups)

    # when its evaluations' masks are built
    masks = plan.masks(np.arange(plan.evaluations_per_row, dtype=np.int64))

    # then there are 2**G of them, all different: repeated coalitions are evaluated once
    assert plan.evaluations_per_row == 2**groups
    assert len({tuple(mask) for mask in masks.tolist()}) == 2**groups


@pytest.mark.parametrize(
    ("row_shape", "window", "stride", "positions"),
    [
        ((4,), (2,), (1,), [3]),
        ((5,), (2,), (2,), [3]),  # starts 0, 2, 4: the last window is cropped
        ((6,), (2,), (2,), [3]),
        ((5,), (5,), (1,), [1]),
        ((8, 8), (3, 3), (2, 2), [4, 4]),  # ceil((8 - 3) / 2) + 1
        ((3, 28, 28), (3, 4, 4), (1, 4, 4), [1, 7, 7]),
        ((1,), (1,), (1,), [1]),
    ],
)
def test_window_positions_are_counted_as_captum_counts_them(
    row_shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...], positions: list[int]
) -> None:
    assert window_positions(row_shape, window, stride) == positions
    assert occlusion_windows(row_shape, window, stride) == math.prod(positions)
    assert OcclusionPlan(row_shape, window, stride).evaluations_per_row == math.prod(positions) + 1


@pytest.mark.parametrize(
    ("groups", "samples", "bound"),
    [
        (0, 5, 1),  # no groups: the unperturbed input is the baseline
        (1, 5, 2),  # one group: with it or without it
        (2, 100, 4),  # capped at the 2**2 coalitions there are
        (3, 1, 4),  # input, baseline, and one permutation's 2 steps between
        (10, 25, 227),  # 25 x 9 + 2, far below 2**10
        (63, 1, 64),  # 2**63 would not fit an int64: the walk alone
        (1000, 2, 2000),  # 2 x 999 + 2
    ],
)
def test_the_shapley_evaluations_bound(groups: int, samples: int, bound: int) -> None:
    assert shapley_evaluations_bound(groups, samples) == bound


@pytest.mark.parametrize(("groups", "samples", "seed"), [(1, 3, 0), (3, 2, 4), (5, 25, 9), (8, 40, 2)])
def test_sampled_plans_never_exceed_the_evaluations_bound(groups: int, samples: int, seed: int) -> None:
    plan = sampled_shapley(groups, samples, seed)

    assert plan.evaluations_per_row <= shapley_evaluations_bound(groups, samples)


@pytest.mark.parametrize("groups", [1, 3, 5])
def test_all_permutations_lists_each_ordering_once(groups: int) -> None:
    permutations = all_permutations(groups)

    assert permutations.shape == (math.factorial(groups), groups)
    assert len({tuple(row) for row in permutations.tolist()}) == math.factorial(groups)
    assert all(sorted(row) == list(range(groups)) for row in permutations.tolist())


def test_sampled_permutations_are_permutations_fixed_by_the_seed() -> None:
    # given 50 samples of 7 groups from one seed
    sampled = sampled_permutations(7, 50, seed=42)

    # then each row orders every group once, the same seed gives the same rows and another seed others
    assert sampled.shape == (50, 7)
    assert sampled.dtype == np.int64
    assert all(sorted(row) == list(range(7)) for row in sampled.tolist())
    np.testing.assert_array_equal(sampled, sampled_permutations(7, 50, seed=42))
    assert not np.array_equal(sampled, sampled_permutations(7, 50, seed=43))


@pytest.mark.parametrize(
    ("element_group", "count"),
    [([], 0), ([0], 1), ([0, 0, 0], 1), ([2, 0, 1, 2], 3)],
)
def test_group_count_is_one_past_the_largest_group_id(element_group: list[int], count: int) -> None:
    assert group_count(np.asarray(element_group, dtype=np.int64)) == count
