"""Offline training: recipes, ONNX export, checks and publishing. Imports torch; never used online."""

from __future__ import annotations

from maas.training.errors import ModelCheckFailed, ParityCheckFailed
from maas.training.export import check_onnx, export_onnx, measure_parity, open_session, signature_of
from maas.training.pipeline import (
    RECIPES,
    TrainedModel,
    ensure_parity,
    publish_trained,
    recipe_names,
    train_and_publish,
    train_recipe,
)
from maas.training.recipe import FitResult, Recipe, RecipeConfig

__all__ = [
    "RECIPES",
    "FitResult",
    "ModelCheckFailed",
    "ParityCheckFailed",
    "Recipe",
    "RecipeConfig",
    "TrainedModel",
    "check_onnx",
    "ensure_parity",
    "export_onnx",
    "measure_parity",
    "open_session",
    "publish_trained",
    "recipe_names",
    "signature_of",
    "train_and_publish",
    "train_recipe",
]
