"""The skeleton every supervised recipe shares, so a recipe keeps only its data, its module and its words.

Held-out validation and test fractions, a seeded stratified split into the three, training on train and
validation, and a FitResult whose params record the config, the run and the split sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from maas.training.export import GraphSpec
from maas.training.lineage import dataset_hash
from maas.training.loop import Objective, Split, train_loop
from maas.training.recipe import FitResult, ModelDetails, TrainingConfig, check_field

X = TypeVar("X")
Y = TypeVar("Y")

# One graph input named "input", with a dynamic batch axis: what most recipes export.
SINGLE_INPUT_GRAPH = GraphSpec()


@dataclass(frozen=True)
class SupervisedConfig(TrainingConfig):
    """A training config with held-out validation and test splits, each a fraction of the whole data set."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            check_field(0 < value < 0.5, name, "a number in (0, 0.5)", value)


@dataclass(frozen=True, eq=False)
class Examples:
    """One split as arrays: the graph's inputs, positionally in the graph's input order, and the targets."""

    inputs: tuple[np.ndarray, ...]
    targets: np.ndarray

    def tensors(self) -> Split:
        """The same arrays as tensors sharing their memory, for the training loop."""
        return Split(tuple(torch.from_numpy(array) for array in self.inputs), torch.from_numpy(self.targets))


@dataclass(frozen=True, eq=False)
class HeldOutSplits:
    """A recipe's data, split into train, validation and held-out test examples."""

    train: Examples
    val: Examples
    test: Examples

    def arrays(self) -> list[np.ndarray]:
        """Every array, split by split and inputs before targets: what the dataset hash covers."""
        splits = (self.train, self.val, self.test)
        return [array for split in splits for array in (*split.inputs, split.targets)]


def stratified_split(x: X, y: Y, config: SupervisedConfig) -> tuple[tuple[X, Y], tuple[X, Y], tuple[X, Y]]:
    """Train, validation and test `(x, y)` drawn by the config's seed, each with the class balance of `y`."""
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=config.test_fraction, stratify=y, random_state=config.seed
    )
    # The validation fraction is of the whole set, so rescale it to what is left after the test split.
    val_of_rest = config.val_fraction / (1.0 - config.test_fraction)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_of_rest, stratify=y_rest, random_state=config.seed
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def fit_supervised(
    module: torch.nn.Module,
    splits: HeldOutSplits,
    objective: Objective,
    config: TrainingConfig,
    *,
    recipe: str,
    params: Mapping[str, Any],
    details: ModelDetails,
    graph: GraphSpec = SINGLE_INPUT_GRAPH,
) -> FitResult:
    """Train `module`, keep its best validation epoch, and return it with the test split in graph form.

    The params are the config's hyperparameters, what the run did and the split sizes, then `params`."""
    history = train_loop(
        module, splits.train.tensors(), splits.val.tensors(), objective, config, description=recipe
    )
    return FitResult(
        module=module,
        graph=graph,
        test_inputs=dict(zip(graph.inputs, splits.test.inputs, strict=True)),
        test_targets=splits.test.targets,
        params={
            **config.hyperparameters(),
            "epochs_run": history.epochs_run,
            "best_epoch": history.best_epoch,
            "n_train": len(splits.train.targets),
            "n_val": len(splits.val.targets),
            "n_test": len(splits.test.targets),
            **params,
        },
        dataset_hash=dataset_hash(splits.arrays()),
        details=details,
        history=history,
    )
