"""What an absent feature becomes: a baseline given by name, number or array, resolved to [N, E] values
in the input's own dtype (values the dtype cannot hold are refused, never wrapped), or to the token that
replaces each token of a text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from maas.errors import InvalidInput
from maas.explain.baselines import (
    describe_baseline,
    in_dtype,
    input_baseline,
    input_baselines,
    replacement_token,
)
from maas.explain.parameters import Baseline
from maas.registry.manifest import Artifact, Manifest, Normalization, Preprocessing
from maas.signature import Signature, TensorSpec

MASK_ID = 103
PAD_ID = 0

WHERE = "parameters.baseline for input 'x'"


@pytest.mark.parametrize(
    ("dtype", "value", "accepted"),
    [
        # float64 cannot hold 2**63 - 1: it reads as 2**63, which int64 would wrap to -2**63
        (np.int64, 2**63 - 1, False),
        (np.int64, 2**63, False),
        (np.int64, -(2**63), True),
        (np.int64, 2**62, True),
        (np.uint64, 2**64 - 1, False),
        (np.uint64, 2**63, True),
        (np.uint64, -1, False),
        (np.int32, 2**31 - 1, True),
        (np.int32, 2**31, False),
        (np.int32, -(2**31), True),
        (np.int32, -(2**31) - 1, False),
        (np.uint8, 255, True),
        (np.uint8, 256, False),
        (np.int8, -129, False),
        (np.int64, 0.5, False),
    ],
)
def test_an_integer_baseline_is_taken_only_within_its_dtype(
    dtype: type[np.integer], value: float, accepted: bool
) -> None:
    given = np.asarray([value], dtype=np.float64)

    if accepted:
        assert in_dtype(given, np.dtype(dtype), WHERE).tolist() == [int(value)]
    else:
        with pytest.raises(InvalidInput, match="expected whole numbers in"):
            in_dtype(given, np.dtype(dtype), WHERE)


def manifest(
    input_means: dict[str, list[float]] | None = None, normalization: list[Normalization] | None = None
) -> Manifest:
    """A model 'm' v3 with one input 'x' of rows [2, 2], recording the training means given."""
    return Manifest(
        name="m",
        version=3,
        created_at="2024-01-01T00:00:00Z",
        signature=Signature(
            inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 2, 2])],
            outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 1])],
        ),
        artifacts=[Artifact(path="model.onnx", sha256="0" * 64, bytes=1)],
        input_means=input_means or {},
        preprocessing=None if normalization is None else Preprocessing(normalization=normalization),
    )


# Two rows of one input 'x', each row [2, 2].
VALUES = np.arange(8, dtype=np.float32).reshape(2, 2, 2)


@pytest.mark.parametrize(
    ("baseline", "model", "expected_row"),
    [
        (None, manifest(), [0.0, 0.0, 0.0, 0.0]),
        ("zeros", manifest(), [0.0, 0.0, 0.0, 0.0]),
        (1.5, manifest(), [1.5, 1.5, 1.5, 1.5]),
        ([[1, 2], [3, 4]], manifest(), [1.0, 2.0, 3.0, 4.0]),
        # broadcast over a row like numpy: one value per column
        ([5, 6], manifest(), [5.0, 6.0, 5.0, 6.0]),
        ({"x": -2}, manifest(), [-2.0, -2.0, -2.0, -2.0]),
        ("mean", manifest(input_means={"x": [1.0, 2.0, 3.0, 4.0]}), [1.0, 2.0, 3.0, 4.0]),
        ("mean", manifest(input_means={"x": [0.25]}), [0.25, 0.25, 0.25, 0.25]),
        # without input_means, the mean the graph's normalization was fitted with
        ("mean", manifest(normalization=[Normalization(input="x", mean=[9.0], std=[1.0])]), [9.0] * 4),
    ],
)
def test_a_baseline_becomes_one_row_of_replacements_for_every_row(
    baseline: Baseline, model: Manifest, expected_row: list[float]
) -> None:
    replacements = input_baseline(baseline, "x", VALUES, model)

    assert replacements.dtype == np.float32
    assert replacements.tolist() == [expected_row, expected_row]


def test_a_baseline_shaped_like_the_whole_input_gives_each_row_its_own() -> None:
    given = (VALUES + 10).tolist()

    replacements = input_baseline(given, "x", VALUES, manifest())

    assert replacements.tolist() == (VALUES + 10).reshape(2, -1).tolist()


def test_a_baseline_per_input_resolves_each_input_in_its_own_dtype() -> None:
    # given two inputs of different dtypes and a baseline object naming both
    inputs: dict[str, Any] = {"x": VALUES, "ids": np.array([[7, 8, 9]], dtype=np.int64).repeat(2, axis=0)}

    # when their baselines are resolved
    replacements = input_baselines({"x": 1, "ids": [1, 2, 3]}, inputs, manifest())

    # then each input gets [N, E] values of its own dtype
    assert replacements["x"].dtype == np.float32 and replacements["x"].tolist() == [[1.0] * 4] * 2
    assert replacements["ids"].dtype == np.int64 and replacements["ids"].tolist() == [[1, 2, 3]] * 2


@pytest.mark.parametrize(
    ("baseline", "model", "message"),
    [
        ("ones", manifest(), "expected 'zeros', 'mean', a number or an array, got 'ones'"),
        (
            [1, 2, 3],
            manifest(),
            "expected a number, one row's shape [2, 2] or the input's [2, 2, 2], got shape [3]",
        ),
        ([[1, 2], [3]], manifest(), "expected a number or a rectangular array of numbers"),
        (float("nan"), manifest(), "expected finite numbers"),
        (1e39, manifest(), "expected numbers within the range of a float32 input"),
        ({"y": 0}, manifest(), "expected a value for input 'x' among the object's keys"),
        (
            "mean",
            manifest(),
            "'mean' needs the training mean of input 'x', which model 'm' v3 does not record",
        ),
        ("mean", manifest(input_means={"x": [1.0, 2.0]}), "has 2 values, but a row has 4"),
    ],
)
def test_a_baseline_that_does_not_fit_the_input_is_refused(
    baseline: Baseline, model: Manifest, message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        input_baseline(baseline, "x", VALUES, model)

    assert raised.value.message.startswith("parameters.baseline")
    assert message in raised.value.message


def test_a_baseline_object_naming_an_unknown_input_is_refused() -> None:
    with pytest.raises(InvalidInput) as raised:
        input_baselines({"x": 0, "z": 1}, {"x": VALUES}, manifest())

    assert raised.value.message == (
        "parameters.baseline: expected values for inputs among ['x'], got unknown input(s) ['z']"
    )


@pytest.mark.parametrize(
    ("baseline", "described"),
    [(None, "zeros"), ("mean", "mean"), (0.5, 0.5), (3, 3), ([1, 2], "given"), ({"x": 0}, "given")],
)
def test_the_response_echoes_a_named_or_numeric_baseline_and_calls_arrays_given(
    baseline: object, described: object
) -> None:
    assert describe_baseline(baseline) == described


@pytest.mark.parametrize(
    ("baseline", "mask_id", "token"),
    [
        (None, MASK_ID, MASK_ID),  # [MASK] by default where the vocabulary has one
        (None, None, PAD_ID),  # else padding
        ("mask", MASK_ID, MASK_ID),
        ("pad", MASK_ID, PAD_ID),
        ("pad", None, PAD_ID),
    ],
)
def test_the_token_that_replaces_each_token_of_a_text(
    baseline: object, mask_id: int | None, token: int
) -> None:
    assert replacement_token(baseline, mask_id, PAD_ID) == token


@pytest.mark.parametrize(
    ("baseline", "mask_id", "message"),
    [
        ("mask", None, "'mask' needs a [MASK] token, which this tokenizer lacks; use 'pad'"),
        ("zeros", MASK_ID, "expected 'mask' or 'pad' for a text input"),
        (0, MASK_ID, "expected 'mask' or 'pad' for a text input"),
    ],
)
def test_a_text_baseline_other_than_mask_or_pad_is_refused(
    baseline: object, mask_id: int | None, message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        replacement_token(baseline, mask_id, PAD_ID)

    assert message in raised.value.message
