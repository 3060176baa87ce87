"""Attributions for numeric inputs, element by element: the plan's perturbed rows run, then folded.

Every input of the model is explained together, so a feature_mask may group elements across inputs; each
input gets back an attribution shaped like it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.datatypes import BY_V2
from maas.errors import InvalidInput
from maas.explain.baselines import describe_baseline, input_baselines
from maas.explain.batching import Evaluations, Perturbed, evaluate
from maas.explain.parameters import ExplainParameters
from maas.explain.plans import tensor_plan


def explain_tensors(
    evaluations: Evaluations, inputs: dict[str, npt.NDArray[Any]], parameters: ExplainParameters
) -> tuple[dict[str, npt.NDArray[np.floating[Any]]], dict[str, Any]]:
    """Per input in signature order, [N, ...row] attributions; and the settings the response echoes."""
    specs = evaluations.model.signature.inputs
    for spec in specs:
        if BY_V2[spec.datatype].numpy == np.object_:
            raise InvalidInput(
                f"input '{spec.name}': explanations perturb numeric inputs, got {spec.datatype}; "
                "only text models' BYTES inputs are explained, token by token"
            )
    rows = len(evaluations.targets)
    row_shapes = {spec.name: tuple(inputs[spec.name].shape[1:]) for spec in specs}
    for spec in specs:
        if inputs[spec.name].shape[0] != rows:
            raise InvalidInput(
                f"input '{spec.name}': expected {rows} rows like the explained output, "
                f"got {inputs[spec.name].shape[0]}"
            )
    flat = {name: inputs[name].reshape(rows, -1) for name in row_shapes}
    baselines = input_baselines(
        parameters.baseline, {name: inputs[name] for name in row_shapes}, evaluations.model.manifest
    )
    plan, settings = tensor_plan(evaluations, parameters, row_shapes)
    per_row = plan.evaluations_per_row
    perturbed = [
        Perturbed(name, flat[name], baselines[name], row_shapes[name], spec.shape[0])
        for name, spec in zip(row_shapes, specs, strict=True)
    ]
    scores, runs = evaluate(
        evaluations,
        perturbed,
        {},
        row_of_job=np.repeat(np.arange(rows), per_row),
        masks_of_jobs=lambda jobs: plan.masks(jobs % per_row),
    )
    attributions = plan.attributions(scores.reshape(rows, per_row))
    by_input: dict[str, npt.NDArray[np.floating[Any]]] = {}
    offset = 0
    for name, shape in row_shapes.items():
        width = math.prod(shape)
        # Attributions are FP32 like most models' inputs; an FP64 input keeps its precision.
        dtype = np.float64 if inputs[name].dtype == np.float64 else np.float32
        by_input[name] = attributions[:, offset : offset + width].reshape(rows, *shape).astype(dtype)
        offset += width
    settings.update(
        baseline=describe_baseline(parameters.baseline),
        evaluations=rows * per_row,
        model_runs=runs,
    )
    return by_input, settings
