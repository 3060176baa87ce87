"""What an explanation explains: the output chosen, its rows, and the value of each row it attributes.

A target is an output index or a class label, for every row or one per row; without one, a classifier's
predicted class or a one-value output's only value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from maas.datatypes import BY_V2
from maas.errors import InvalidInput
from maas.explain.attribution import IntArray
from maas.explain.parameters import MAX_ECHOED_INDEX
from maas.registry.manifest import Manifest
from maas.runtime import LoadedModel
from maas.signature import TensorSpec

# Labels listed in an error about an unknown target; a model with more gets the first ones and a count.
MAX_LISTED_LABELS = 20


def explained_output(model: LoadedModel, name: str | None) -> TensorSpec:
    """The output named (default the first), which must be numeric to have scores to attribute."""
    outputs = model.signature.outputs
    if name is None:
        spec = outputs[0]
    else:
        found = [spec for spec in outputs if spec.name == name]
        if not found:
            raise InvalidInput(
                f"parameters.output: expected one of {[spec.name for spec in outputs]} for model "
                f"'{model.name}', got an unknown output"
            )
        spec = found[0]
    if BY_V2[spec.datatype].numpy == np.object_ or spec.datatype == "BOOL":
        raise InvalidInput(
            f"parameters.output: expected a numeric output to explain, got '{spec.name}' ({spec.datatype})"
        )
    return spec


def row_count(first_input: npt.NDArray[Any], predicted: npt.NDArray[Any], output: str) -> int:
    """Rows to explain: the request's, which the explained output must answer one for one."""
    rows = first_input.shape[0] if first_input.ndim else 0
    if rows == 0:
        raise InvalidInput("inputs: expected at least one row to explain, got none")
    if predicted.ndim == 0 or predicted.shape[0] != rows:
        raise InvalidInput(
            f"parameters.output: '{output[:64]}' has shape {list(predicted.shape)} for {rows} rows; "
            "explanations need an output with one row per input row"
        )
    return rows


def target_indices(
    target: int | str | list[int | str] | None,
    scores: npt.NDArray[Any],
    manifest: Manifest,
    output: str,
) -> IntArray:
    """Per row of [N, width] `scores`, the index of the value explained."""
    rows, width = scores.shape
    where = f"output '{output}' ({width} value{'s' if width != 1 else ''} per row)"
    if target is None:
        if width == 1:
            return np.zeros(rows, dtype=np.int64)
        if manifest.labels or manifest.task == "classification":
            predicted: IntArray = np.argmax(scores, axis=1).astype(np.int64)
            return predicted
        raise InvalidInput(
            f"parameters.target: required for {where}: expected an output index in [0, {width - 1}]"
        )
    given = target if isinstance(target, list) else [target] * rows
    if len(given) != rows:
        raise InvalidInput(f"parameters.target: expected one target per row ({rows}), got {len(given)}")
    labels = manifest.labels or []
    resolved: list[int] = []
    for item in given:
        index = item
        if isinstance(item, str):
            if item not in labels:
                listed = labels[:MAX_LISTED_LABELS] + (["..."] if len(labels) > MAX_LISTED_LABELS else [])
                raise InvalidInput(
                    f"parameters.target: expected an output index in [0, {width - 1}] or one of the labels "
                    f"{listed}, got an unknown label"
                )
            index = labels.index(item)
        assert isinstance(index, int)
        if not 0 <= index < width:
            got = index if abs(index) <= MAX_ECHOED_INDEX else "one far outside"
            raise InvalidInput(
                f"parameters.target: expected an output index in [0, {width - 1}] for {where}, got {got}"
            )
        resolved.append(index)
    return np.asarray(resolved, dtype=np.int64)
