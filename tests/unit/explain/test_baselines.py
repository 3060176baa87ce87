"""A baseline in the input's own dtype: values the dtype cannot hold are refused, never wrapped."""

from __future__ import annotations

import numpy as np
import pytest

from maas.errors import InvalidInput
from maas.explain.baselines import in_dtype

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
