"""The seed recipe: Linear(10, 20) -> Linear(20, 10) on a seeded synthetic linear regression task.

The data is linear, so the expected quality is known (R² close to 1): a regression anywhere in training,
export or serving shows up as a metric change instead of hiding in noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from maas.training.export import INPUT_NAME
from maas.training.loop import Objective
from maas.training.recipe import FitResult, ModelDetails, Recipe, check_field, row_means
from maas.training.supervised import Examples, HeldOutSplits, SupervisedConfig, fit_supervised

RECIPE_NAME = "seed-mlp"
N_FEATURES = 10
N_OUTPUTS = 10


@dataclass(frozen=True)
class SeedMlpConfig(SupervisedConfig):
    """Defaults train in a few seconds on two CPU cores; early stopping usually ends well before `epochs`.

    `width` is the hidden layer's size and `depth` the number of hidden layers (the seed is one of 20)."""

    n_samples: int = 2000
    noise: float = 0.05
    width: int = 20
    lr: float = 0.01
    epochs: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field(self.noise >= 0, "noise", "a number >= 0", self.noise)
        check_field(self.n_samples >= 20, "n_samples", "an integer >= 20", self.n_samples)
        # R² needs at least two test samples to be defined.
        n_test = round(self.n_samples * self.test_fraction)
        check_field(
            n_test >= 2, "test_fraction", "a fraction leaving at least 2 test samples", self.test_fraction
        )


def make_dataset(config: SeedMlpConfig) -> HeldOutSplits:
    """y = x @ W + b + noise, with W and b drawn from the seed, so one seed is one dataset everywhere."""
    rng = np.random.default_rng(config.seed)
    weights = rng.normal(0.0, 1.0 / math.sqrt(N_FEATURES), size=(N_FEATURES, N_OUTPUTS))
    bias = rng.normal(0.0, 0.5, size=N_OUTPUTS)
    x = rng.normal(size=(config.n_samples, N_FEATURES))
    y = x @ weights + bias + config.noise * rng.normal(size=(config.n_samples, N_OUTPUTS))
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    n_test = max(1, round(config.n_samples * config.test_fraction))
    n_val = max(1, round(config.n_samples * config.val_fraction))
    n_train = config.n_samples - n_val - n_test
    val_end = n_train + n_val
    return HeldOutSplits(
        train=Examples((x32[:n_train],), y32[:n_train]),
        val=Examples((x32[n_train:val_end],), y32[n_train:val_end]),
        test=Examples((x32[val_end:],), y32[val_end:]),
    )


def build_module(config: SeedMlpConfig) -> torch.nn.Sequential:
    """Linear(10, width) -> [Dropout] -> ... -> Linear(width, 10); the defaults are the seed's two layers.

    No activation, as in the seed: the task is linear, and extra hidden layers only add capacity."""
    torch.manual_seed(config.seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(N_FEATURES, config.width)]
    for _ in range(config.depth - 1):
        if config.dropout:
            layers.append(torch.nn.Dropout(config.dropout))
        layers.append(torch.nn.Linear(config.width, config.width))
    if config.dropout:
        layers.append(torch.nn.Dropout(config.dropout))
    layers.append(torch.nn.Linear(config.width, N_OUTPUTS))
    return torch.nn.Sequential(*layers)


def _mse(outputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((outputs.astype(np.float64) - targets.astype(np.float64)) ** 2))


OBJECTIVE = Objective(loss=torch.nn.MSELoss(), metric=_mse, metric_name="mse", metric_goal="minimize")


def fit_seed_mlp(config: SeedMlpConfig) -> FitResult:
    splits = make_dataset(config)
    (x_train,) = splits.train.inputs
    details = ModelDetails(
        description=(
            f"Seed MLP Linear({N_FEATURES}, {config.width}) -> Linear({config.width}, {N_OUTPUTS}) "
            "on synthetic linear regression data"
        ),
        intended_use="A reference model for checking the platform end to end; not for real predictions.",
        data_description=(
            f"{config.n_samples} seeded samples of y = x W + b + noise (sigma {config.noise:g}), "
            f"x ~ N(0, I) with {N_FEATURES} features and {N_OUTPUTS} targets; split in order into train, "
            f"validation ({config.val_fraction:g}) and test ({config.test_fraction:g})."
        ),
        limitations="Learns one synthetic linear map; it says nothing about any real data.",
        input_means={INPUT_NAME: row_means(x_train)},
    )
    params = {"n_features": N_FEATURES, "n_outputs": N_OUTPUTS, "loss": "mse"}
    return fit_supervised(
        build_module(config), splits, OBJECTIVE, config, recipe=RECIPE_NAME, params=params, details=details
    )


SEED_MLP = Recipe(
    name=RECIPE_NAME,
    task="regression",
    default_config=SeedMlpConfig(),
    fit=fit_seed_mlp,
    primary_metric="mse",
    primary_metric_goal="minimize",
    # The test mse is about 0.0025 (the data's noise); 0.01 would let int8 be five times worse.
    int8_max_degradation=0.001,
)
