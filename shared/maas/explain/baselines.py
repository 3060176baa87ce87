"""What an absent feature becomes: `parameters.baseline` resolved to values in each input's own dtype, or
to the token that replaces each token of a text.

Values an input's dtype cannot hold are refused, never wrapped: a baseline of 2**63 for an INT64 input is an
error, not -2**63.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.errors import InvalidInput
from maas.explain.attribution import FloatArray
from maas.explain.parameters import Baseline
from maas.registry.manifest import Manifest


def input_baselines(
    baseline: Baseline, inputs: dict[str, npt.NDArray[Any]], manifest: Manifest
) -> dict[str, npt.NDArray[Any]]:
    """[N, E] replacement values per input, for a baseline given once or as an object per input."""
    if isinstance(baseline, dict):
        unknown = sorted(set(baseline) - set(inputs))
        if unknown:
            raise InvalidInput(
                f"parameters.baseline: expected values for inputs among {list(inputs)}, got unknown "
                f"input(s) {[key[:64] for key in unknown[:5]]}"
            )
    return {name: input_baseline(baseline, name, values, manifest) for name, values in inputs.items()}


def input_baseline(
    baseline: Baseline, name: str, values: npt.NDArray[Any], manifest: Manifest
) -> npt.NDArray[Any]:
    """[N, E] replacement values for input `name`, in its own dtype."""
    rows = values.shape[0]
    row_shape = values.shape[1:]
    if isinstance(baseline, dict):
        if name not in baseline:
            raise InvalidInput(
                f"parameters.baseline: expected a value for input '{name[:64]}' among the object's keys"
            )
        baseline = baseline[name]
    where = f"parameters.baseline for input '{name[:64]}'"
    if baseline is None or baseline == "zeros":
        replacement: npt.NDArray[Any] = np.zeros(row_shape)
    elif baseline == "mean":
        replacement = training_mean(manifest, name, row_shape)
    elif isinstance(baseline, str):
        raise InvalidInput(f"{where}: expected 'zeros', 'mean', a number or an array, got '{baseline[:16]}'")
    else:
        try:
            given = np.asarray(baseline, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"{where}: expected a number or a rectangular array of numbers") from None
        if given.shape == values.shape:
            return in_dtype(given, values.dtype, where).reshape(rows, -1)
        try:
            replacement = np.broadcast_to(given, row_shape)
        except ValueError:
            raise InvalidInput(
                f"{where}: expected a number, one row's shape {list(row_shape)} or the input's "
                f"{list(values.shape)}, got shape {list(given.shape)}"
            ) from None
    row = in_dtype(np.asarray(replacement, dtype=np.float64), values.dtype, where).reshape(1, -1)
    return np.broadcast_to(row, (rows, row.shape[1]))


def in_dtype(given: FloatArray, dtype: np.dtype[Any], where: str) -> npt.NDArray[Any]:
    """The baseline in the input's dtype, refusing values it cannot hold rather than wrapping them."""
    if not np.isfinite(given).all():
        raise InvalidInput(f"{where}: expected finite numbers, got null, NaN or infinity")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # Compared with powers of two, which float64 holds exactly: int64's max is not one of its values
        # (2**63 - 1 reads as 2**63), so `<= info.max` would let 2**63 through to wrap to -2**63.
        bits = dtype.itemsize * 8
        low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1)) if dtype.kind == "i" else (0.0, 2.0**bits)
        if not (
            np.all(given == np.round(given)) and given.min(initial=0) >= low and given.max(initial=0) < high
        ):
            raise InvalidInput(
                f"{where}: expected whole numbers in [{info.min}, {info.max}] for a {dtype.name} input"
            )
    elif dtype.kind == "b" and not np.isin(given, (0, 1)).all():
        raise InvalidInput(f"{where}: expected 0 or 1 for a boolean input")
    elif dtype.kind == "f" and np.abs(given).max(initial=0) > np.finfo(dtype).max:
        raise InvalidInput(f"{where}: expected numbers within the range of a {dtype.name} input")
    return given.astype(dtype)


def training_mean(manifest: Manifest, name: str, row_shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """One row of input `name`'s training mean: the manifest's input_means, else its normalization's."""
    means = manifest.input_means.get(name)
    if means is None and manifest.preprocessing is not None:
        for normalization in manifest.preprocessing.normalization:
            if normalization.input == name:
                means = normalization.mean
    if means is None:
        raise InvalidInput(
            f"parameters.baseline: 'mean' needs the training mean of input '{name[:64]}', which model "
            f"'{manifest.name}' v{manifest.version} does not record; use 'zeros', a number or an array"
        )
    array = np.asarray(means, dtype=np.float64)
    if array.size == 1:
        return np.full(row_shape, float(array.reshape(-1)[0]))
    if array.size != math.prod(row_shape):
        raise InvalidInput(
            f"parameters.baseline: the recorded training mean of input '{name[:64]}' has {array.size} "
            f"values, but a row has {math.prod(row_shape)}"
        )
    return array.reshape(row_shape)


def describe_baseline(baseline: object) -> object:
    """The baseline as the response's settings echo it: a name or number as given, an array as 'given'."""
    if baseline is None:
        return "zeros"
    if isinstance(baseline, str | int | float):
        return baseline
    return "given"


def replacement_token(baseline: object, mask_id: int | None, pad_id: int) -> int:
    """The token id that replaces each token of a text: [MASK] by default where the vocabulary has one."""
    if baseline is None:
        return mask_id if mask_id is not None else pad_id
    if baseline == "mask":
        if mask_id is None:
            raise InvalidInput(
                "parameters.baseline: 'mask' needs a [MASK] token, which this tokenizer lacks; use 'pad'"
            )
        return mask_id
    if baseline == "pad":
        return pad_id
    raise InvalidInput(
        "parameters.baseline: expected 'mask' or 'pad' for a text input, the token that replaces each one"
    )
