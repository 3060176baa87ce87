"""What every recipe shares: a typed config that takes overrides, and the result of fitting it.

A recipe only trains and evaluates; exporting, checking and publishing are the pipeline's, so every
recipe gets the same guarantees without repeating them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import torch

from maas.errors import InvalidInput

DEFAULT_PARITY_TOLERANCE = 1e-4

# Fields about exporting and checking rather than learning; they stay out of the manifest's params.
EXPORT_FIELDS = frozenset({"external_data", "parity_tolerance"})


@dataclass(frozen=True)
class RecipeConfig:
    """Options every recipe has. Subclasses add hyperparameters, all with defaults."""

    seed: int = 0
    external_data: bool = False
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE

    def __post_init__(self) -> None:
        check_field(self.seed >= 0, "seed", "an integer >= 0", self.seed)
        check_field(self.parity_tolerance > 0, "parity_tolerance", "a number > 0", self.parity_tolerance)

    def hyperparameters(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in EXPORT_FIELDS}


ConfigT = TypeVar("ConfigT", bound=RecipeConfig)


@dataclass(frozen=True, eq=False)
class FitResult:
    """A trained module with its evaluation, ready to export. `module` is in eval mode, on CPU."""

    module: torch.nn.Module
    test_inputs: np.ndarray
    metrics: dict[str, float]
    params: dict[str, Any]
    dataset_hash: str
    description: str = ""
    labels: list[str] | None = None


@dataclass(frozen=True)
class Recipe(Generic[ConfigT]):
    name: str
    task: str
    default_config: ConfigT
    fit: Callable[[ConfigT], FitResult]
    # The test metric a promotion compares, and whether lower or higher is better.
    primary_metric: str
    primary_metric_goal: Literal["minimize", "maximize"] = "minimize"


def apply_overrides(config: ConfigT, overrides: Mapping[str, Any] | None) -> ConfigT:
    """Return `config` with `overrides` applied, checking each key and value type before anything runs."""
    if not overrides:
        return config
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInput(f"config: unknown field(s) {unknown}; expected some of {sorted(known)}")
    checked: dict[str, Any] = {
        name: _checked_value(name, getattr(config, name), value) for name, value in overrides.items()
    }
    return dataclasses.replace(config, **checked)


def _checked_value(name: str, default: object, value: object) -> object:
    # The default's type is the field's type: every config field has a plain scalar default.
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "a boolean"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "an integer"
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        expected = "a number"
    else:
        if isinstance(value, type(default)):
            return value
        expected = type(default).__name__
    raise InvalidInput(f"config: {name}: expected {expected}, got {type(value).__name__}")


def check_field(condition: bool, name: str, expected: str, got: object) -> None:
    """Raise InvalidInput naming the field unless `condition` holds; configs call it in __post_init__."""
    if not condition:
        raise InvalidInput(f"config: {name}: expected {expected}, got {got!r}")
