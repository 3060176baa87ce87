"""Offline training: recipes, ONNX export, checks and publishing. Never used online.

The names below are imported on first use, not with the package: importing torch costs seconds and about
230 MB, and some submodules need none of it (`maas publish` of an ONNX file through
maas.training.byo.onnx_import, the synthetic model of maas.training.matmul_chain). Importing one of them must
not import the recipes. Looking a recipe up by name is `maas.training.pipeline.recipe`: as a name of this
package, `recipe` is the submodule maas.training.recipe.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maas.training.errors import ModelCheckFailed, ParityCheckFailed, QuantizationRefused
    from maas.training.export import GraphSpec, export_onnx, measure_parity
    from maas.training.onnx_checks import check_onnx, open_session, signature_of
    from maas.training.pipeline import (
        RECIPES,
        TrainedModel,
        export_trained,
        publish_trained,
        recipe_names,
        train_and_publish,
        train_recipe,
    )
    from maas.training.publish_gates import ensure_parity, ensure_publishable
    from maas.training.recipe import FitResult, Recipe, RecipeConfig, TrainingConfig

_HOME = {
    "ModelCheckFailed": "maas.training.errors",
    "ParityCheckFailed": "maas.training.errors",
    "QuantizationRefused": "maas.training.errors",
    "GraphSpec": "maas.training.export",
    "export_onnx": "maas.training.export",
    "measure_parity": "maas.training.export",
    "check_onnx": "maas.training.onnx_checks",
    "open_session": "maas.training.onnx_checks",
    "signature_of": "maas.training.onnx_checks",
    "RECIPES": "maas.training.pipeline",
    "TrainedModel": "maas.training.pipeline",
    "ensure_parity": "maas.training.publish_gates",
    "ensure_publishable": "maas.training.publish_gates",
    "export_trained": "maas.training.pipeline",
    "publish_trained": "maas.training.pipeline",
    "recipe_names": "maas.training.pipeline",
    "train_and_publish": "maas.training.pipeline",
    "train_recipe": "maas.training.pipeline",
    "FitResult": "maas.training.recipe",
    "Recipe": "maas.training.recipe",
    "RecipeConfig": "maas.training.recipe",
    "TrainingConfig": "maas.training.recipe",
}

__all__ = [
    "RECIPES",
    "FitResult",
    "GraphSpec",
    "ModelCheckFailed",
    "ParityCheckFailed",
    "QuantizationRefused",
    "Recipe",
    "RecipeConfig",
    "TrainedModel",
    "TrainingConfig",
    "check_onnx",
    "ensure_parity",
    "ensure_publishable",
    "export_onnx",
    "export_trained",
    "measure_parity",
    "open_session",
    "publish_trained",
    "recipe_names",
    "signature_of",
    "train_and_publish",
    "train_recipe",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'maas.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once: the next access finds it without this hook
    return value
