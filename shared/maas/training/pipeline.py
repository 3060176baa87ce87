"""Train, export, check, publish: the same steps and guarantees for every recipe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maas.errors import InvalidInput
from maas.registry import Manifest, ManifestDraft, ModelRegistry
from maas.training.errors import ParityCheckFailed
from maas.training.export import (
    check_onnx,
    export_onnx,
    external_data_files,
    measure_parity,
    open_session,
    signature_of,
)
from maas.training.lineage import build_lineage
from maas.training.recipe import Recipe, apply_overrides
from maas.training.seed_mlp import SEED_MLP

RECIPES: dict[str, Recipe[Any]] = {SEED_MLP.name: SEED_MLP}
EXAMPLE_BATCH = 4


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained module with its checked ONNX files and the manifest draft that describes them."""

    recipe: str
    module: torch.nn.Module
    files: dict[str, bytes]
    draft: ManifestDraft
    test_inputs: np.ndarray

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """The torch reference output, to compare a served model against."""
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        with torch.inference_mode():
            output: np.ndarray = self.module(torch.from_numpy(batch)).numpy()
        return output.astype(np.float32, copy=False)


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def train_recipe(recipe: str, overrides: Mapping[str, Any] | None = None) -> TrainedModel:
    """Fit a recipe, export it, and run every check; a failed parity is recorded, not raised.

    Recording it lets the caller see the numbers; publishing is where a failed model is refused.
    """
    chosen = _recipe(recipe)
    config = apply_overrides(chosen.default_config, overrides)
    fitted = chosen.fit(config)
    example = torch.from_numpy(np.ascontiguousarray(fitted.test_inputs[:EXAMPLE_BATCH]))
    files = export_onnx(fitted.module, example, external_data=config.external_data)
    check_onnx(files)
    session = open_session(files)
    draft = ManifestDraft(
        task=chosen.task,
        primary_metric=chosen.primary_metric,
        primary_metric_goal=chosen.primary_metric_goal,
        description=fitted.description,
        model_data_files=external_data_files(files),
        signature=signature_of(session),
        metrics=fitted.metrics,
        params=fitted.params,
        lineage=build_lineage(chosen.name, fitted.dataset_hash, config.seed),
        parity=measure_parity(fitted.module, session, fitted.test_inputs, tolerance=config.parity_tolerance),
        labels=fitted.labels,
    )
    return TrainedModel(
        recipe=chosen.name,
        module=fitted.module,
        files=files,
        draft=draft,
        test_inputs=fitted.test_inputs,
    )


def ensure_parity(draft: ManifestDraft) -> None:
    """Refuse a model whose ONNX export was not shown to match torch."""
    parity = draft.parity
    if parity is None:
        raise ParityCheckFailed("parity: expected a measured torch/onnxruntime parity check, found none")
    if not parity.passed:
        raise ParityCheckFailed(
            f"parity: expected max abs diff <= {parity.tolerance:g} between torch and onnxruntime, "
            f"got {parity.max_abs_diff:g} over {parity.samples} samples"
        )


def publish_trained(trained: TrainedModel, registry: ModelRegistry, name: str | None = None) -> Manifest:
    """Publish a new immutable version, under the recipe's name unless `name` is given."""
    ensure_parity(trained.draft)
    return registry.publish(name or trained.recipe, trained.files, trained.draft)


def train_and_publish(
    recipe: str,
    registry: ModelRegistry,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Manifest:
    return publish_trained(train_recipe(recipe, overrides), registry, name)


def _recipe(name: str) -> Recipe[Any]:
    try:
        return RECIPES[name]
    except KeyError:
        raise InvalidInput(f"recipe: expected one of {recipe_names()}, got {name!r}") from None
