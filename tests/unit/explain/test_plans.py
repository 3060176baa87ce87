"""A request's feature_mask and occlusion window, read into the groups and windows a plan evaluates.

Group ids are labels: whatever integers a client sends, the groups come out numbered 0..G-1 in the order
they first appear across the inputs, and an input without a mask keeps one group per element. A window
given over a row's last dimensions covers the leading ones whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.explain.parameters import ExplainParameters
from maas.explain.plans import MAX_GROUP_ID, feature_groups, occlusion_window


@dataclass(frozen=True)
class Grouping:
    name: str
    mask: list[Any] | dict[str, list[Any]] | None
    row_shapes: dict[str, tuple[int, ...]]
    expected: list[int]


GROUPINGS = [
    Grouping("no-mask-every-element-alone", None, {"a": (2, 2), "b": (1,)}, [0, 1, 2, 3, 4]),
    Grouping("renumbered-by-first-appearance", [7, 3, 7, 0], {"x": (4,)}, [0, 1, 0, 2]),
    Grouping("a-leading-1-is-one-row", [[[5, 5], [9, 5]]], {"x": (2, 2)}, [0, 0, 1, 0]),
    Grouping("the-largest-id-is-a-label-like-any", [MAX_GROUP_ID, 0, MAX_GROUP_ID], {"x": (3,)}, [0, 1, 0]),
    Grouping(
        "one-id-groups-elements-across-inputs",
        {"a": [1, 2], "b": [2, 1, 3]},
        {"a": (2,), "b": (3,)},
        [0, 1, 1, 0, 2],
    ),
    # An input without a mask keeps its elements apart from every id given, in the order of the inputs.
    Grouping(
        "an-unmasked-input-keeps-one-group-per-element",
        {"b": [0, 0]},
        {"a": (2,), "b": (2,), "c": (1,)},
        [0, 1, 2, 2, 3],
    ),
]


@pytest.mark.parametrize("case", GROUPINGS, ids=[case.name for case in GROUPINGS])
def test_feature_groups_are_numbered_in_order_of_first_appearance(case: Grouping) -> None:
    assert feature_groups(case.mask, case.row_shapes).tolist() == case.expected


@pytest.mark.parametrize(
    ("mask", "row_shapes", "message"),
    [
        ([0, 1], {"a": (1,), "b": (1,)}, "expected an object with a mask per input"),
        ({"z": [0]}, {"a": (1,)}, "got unknown input(s) ['z']"),
        ([0, 1, 2], {"x": (2,)}, "expected the shape of one row [2] (or [1, ...]), got [3]"),
        ([[0, 1], [2]], {"x": (2,)}, "expected a rectangular array of integer group ids"),
        ([0, -1], {"x": (2,)}, f"expected group ids in [0, {MAX_GROUP_ID}], got one outside"),
        ([0, 2**63], {"x": (2,)}, "got one outside"),
        ([2**64, 0], {"x": (2,)}, "got one outside"),
        ([0.5, 1.0], {"x": (2,)}, "expected integer group ids, got fractional numbers"),
        ([True, False], {"x": (2,)}, "expected integer group ids, got booleans"),
        (["a", "b"], {"x": (2,)}, "expected integer group ids, got strings"),
    ],
)
def test_a_mask_that_is_not_one_row_of_group_ids_is_refused(
    mask: list[Any] | dict[str, list[Any]], row_shapes: dict[str, tuple[int, ...]], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        feature_groups(mask, row_shapes)

    assert raised.value.message.startswith("parameters.feature_mask")
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("window", "stride", "row_shape", "full_window", "full_stride"),
    [
        # An integer is a square over the last two dimensions; leading ones are covered whole.
        (2, None, (3, 8, 8), [3, 2, 2], [1, 1, 1]),
        (2, 2, (3, 8, 8), [3, 2, 2], [1, 2, 2]),
        # ... or over the only one of a 1-D row.
        (3, None, (10,), [3], [1]),
        ([4], [2], (3, 8, 8), [3, 8, 4], [1, 1, 2]),
        ([1, 2, 2], [1, 1, 2], (3, 8, 8), [1, 2, 2], [1, 1, 2]),
        # A step longer than the window is allowed where the window spans the whole dimension.
        ([3, 2], [5, 1], (3, 4), [3, 2], [5, 1]),
    ],
)
def test_an_occlusion_window_covers_every_dimension_of_a_row(
    window: int | list[int],
    stride: int | list[int] | None,
    row_shape: tuple[int, ...],
    full_window: list[int],
    full_stride: list[int],
) -> None:
    parameters = ExplainParameters(method="occlusion", window=window, stride=stride)

    assert occlusion_window(parameters, row_shape) == (full_window, full_stride)


@pytest.mark.parametrize(
    ("window", "stride", "row_shape", "message"),
    [
        (None, None, (8, 8), "parameters.window: required for occlusion"),
        ([1, 1, 1], None, (8, 8), "parameters.window: expected 1 to 2 sizes"),
        (9, None, (8, 8), "parameters.window: expected sizes between 1 and the row's dimensions [8, 8]"),
        (0, None, (8, 8), "got [0, 0]"),
        (10**13, None, (8, 8), "got a size far beyond any row"),
        (2, [1, 1, 1], (8, 8), "parameters.stride: expected 1 to 2 sizes"),
        ([2, 2], [1], (8, 8), "parameters.stride: expected 2 values like the window, got 1"),
        (2, 0, (8, 8), "parameters.stride: expected positive steps"),
        # Captum's rule: a step past the window leaves elements no window covers.
        (2, 3, (8, 8), "parameters.stride: expected steps no longer than the window [2, 2]"),
    ],
)
def test_a_window_or_stride_that_does_not_fit_the_row_is_refused(
    window: int | list[int] | None, stride: int | list[int] | None, row_shape: tuple[int, ...], message: str
) -> None:
    parameters = ExplainParameters(method="occlusion", window=window, stride=stride)

    with pytest.raises(InvalidInput) as raised:
        occlusion_window(parameters, row_shape)

    assert message in raised.value.message
