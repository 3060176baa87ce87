"""Offline training: recipes, ONNX export, checks and publishing. Imports torch; never used online."""

from __future__ import annotations

from maas.training.errors import ModelCheckFailed, ParityCheckFailed, QuantizationRefused
from maas.training.export import (
    GraphSpec,
    check_onnx,
    export_onnx,
    measure_parity,
    open_session,
    signature_of,
)
from maas.training.pipeline import (
    RECIPES,
    TrainedModel,
    ensure_parity,
    ensure_publishable,
    export_trained,
    publish_trained,
    recipe,
    recipe_names,
    train_and_publish,
    train_recipe,
)
from maas.training.recipe import FitResult, Recipe, RecipeConfig, TrainingConfig

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
    "recipe",
    "recipe_names",
    "signature_of",
    "train_and_publish",
    "train_recipe",
]
