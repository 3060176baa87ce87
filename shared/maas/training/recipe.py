"""What every recipe shares: a typed config that takes overrides, and the result of fitting it.

A recipe prepares its data and trains; exporting, evaluating through onnxruntime, checking and publishing
are the pipeline's, so every recipe gets the same guarantees without repeating them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import torch

from maas.errors import InvalidInput
from maas.registry import Preprocessing
from maas.training.export import GraphSpec
from maas.training.history import History

DEFAULT_PARITY_TOLERANCE = 1e-4
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "plateau")

# Fields about exporting, checking and running rather than learning; they stay out of the manifest's params.
EXPORT_FIELDS = frozenset({"external_data", "parity_tolerance", "checkpoint_dir", "progress"})


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


@dataclass(frozen=True)
class TrainingConfig(RecipeConfig):
    """The hyperparameters the shared training loop reads, and the names a search space may use.

    `width`, `depth` and `dropout` mean what each recipe's architecture says (hidden units and layers for
    an MLP, channels and residual blocks for a CNN, model size and encoder layers for a transformer)."""

    epochs: int = 50
    lr: float = 1e-3
    optimizer: str = "adam"
    batch_size: int = 64
    patience: int = 10
    lr_schedule: str = "none"
    weight_decay: float = 0.0
    width: int = 32
    depth: int = 1
    dropout: float = 0.0
    # Where the best-epoch state_dict is kept; "" keeps it in a temporary folder for the run only.
    checkpoint_dir: str = ""
    # A progress bar with the live loss on a terminal; never in logs.
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        check_field(self.lr > 0, "lr", "a number > 0", self.lr)
        check_field(self.optimizer in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        check_field(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check_field(self.patience >= 1, "patience", "an integer >= 1", self.patience)
        check_field(
            self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {list(LR_SCHEDULES)}", self.lr_schedule
        )
        check_field(self.weight_decay >= 0, "weight_decay", "a number >= 0", self.weight_decay)
        check_field(self.width >= 1, "width", "an integer >= 1", self.width)
        check_field(self.depth >= 1, "depth", "an integer >= 1", self.depth)
        check_field(0 <= self.dropout < 1, "dropout", "a number in [0, 1)", self.dropout)


ConfigT = TypeVar("ConfigT", bound=RecipeConfig)
Task = Literal["regression", "classification", "embedding"]


@dataclass(frozen=True, eq=False)
class ModelDetails:
    """What a recipe says about its model and ships beside the graph: the card's prose, the class labels,
    the preprocessing, extra files and the training split's input means."""

    description: str = ""
    intended_use: str = ""
    data_description: str = ""
    limitations: str = ""
    labels: list[str] | None = None
    preprocessing: Preprocessing | None = None
    # Files published beside the graph, e.g. {"tokenizer.json": ...}.
    extra_files: dict[str, bytes] = field(default_factory=dict)
    # Per graph input, the training split's mean of each element of one row (see `row_means`): what an
    # explanation's "mean" baseline replaces a feature with. Empty where the recipe records none.
    input_means: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class FitResult:
    """A trained module (eval mode, CPU) with its held-out test set, ready to export and evaluate.

    The test set is in the graph's own input form, so the pipeline can evaluate exactly what onnxruntime
    will serve. `targets` is None for tasks measured against the torch reference (embeddings)."""

    module: torch.nn.Module
    graph: GraphSpec
    test_inputs: dict[str, np.ndarray]
    test_targets: np.ndarray | None
    params: dict[str, Any]
    dataset_hash: str
    details: ModelDetails
    history: History | None = None

    @property
    def validation_score(self) -> float:
        """The best validation metric: what a hyperparameter search compares (never the test set)."""
        return self.history.best_val_metric if self.history is not None else float("nan")


def row_means(rows: np.ndarray) -> list[float]:
    """The mean of each element of one row over all rows (axis 0), flattened in C order, in float64."""
    return [float(value) for value in rows.astype(np.float64).mean(axis=0).reshape(-1)]


@dataclass(frozen=True)
class Recipe(Generic[ConfigT]):
    name: str
    task: Task
    default_config: ConfigT
    fit: Callable[[ConfigT], FitResult]
    # The test metric a promotion compares, and whether lower or higher is better.
    primary_metric: str
    primary_metric_goal: Literal["minimize", "maximize"]
    # How much of the primary metric (in its own units) an int8 version may lose before it is refused.
    int8_max_degradation: float = 0.01
    # The int8 speed gate's input: this many rows of the test set, one call (int8_speed.benchmark_feeds).
    # One row: a function serves requests one at a time, and the int8 target is batch 1.
    benchmark_batch: int = 1


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
