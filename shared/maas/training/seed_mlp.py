"""The seed recipe: Linear(10, 20) -> Linear(20, 10) on a seeded synthetic linear regression task.

The data is linear, so the expected quality is known (R² close to 1): a regression anywhere in training,
export or serving shows up as a metric change instead of hiding in noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from maas.training.lineage import dataset_hash
from maas.training.recipe import FitResult, Recipe, RecipeConfig, check_field

RECIPE_NAME = "seed-mlp"
N_FEATURES = 10
N_OUTPUTS = 10

Array = NDArray[np.float32]


@dataclass(frozen=True)
class SeedMlpConfig(RecipeConfig):
    """Defaults train in a few seconds on two CPU cores; early stopping usually ends well before `epochs`."""

    n_samples: int = 2000
    noise: float = 0.05
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    hidden: int = 20
    lr: float = 0.01
    epochs: int = 200
    batch_size: int = 64
    patience: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field(self.noise >= 0, "noise", "a number >= 0", self.noise)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            check_field(0 < value < 0.5, name, "a number in (0, 0.5)", value)
        check_field(self.n_samples >= 20, "n_samples", "an integer >= 20", self.n_samples)
        check_field(self.hidden >= 1, "hidden", "an integer >= 1", self.hidden)
        check_field(self.lr > 0, "lr", "a number > 0", self.lr)
        check_field(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        check_field(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check_field(self.patience >= 1, "patience", "an integer >= 1", self.patience)


@dataclass(frozen=True, eq=False)
class RegressionSplits:
    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    x_test: Array
    y_test: Array

    def arrays(self) -> tuple[Array, ...]:
        return (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test)


@dataclass(frozen=True)
class FitHistory:
    epochs_run: int
    best_epoch: int
    best_val_mse: float


def make_dataset(config: SeedMlpConfig) -> RegressionSplits:
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
    return RegressionSplits(
        x_train=x32[:n_train],
        y_train=y32[:n_train],
        x_val=x32[n_train:val_end],
        y_val=y32[n_train:val_end],
        x_test=x32[val_end:],
        y_test=y32[val_end:],
    )


def build_module(config: SeedMlpConfig) -> torch.nn.Sequential:
    torch.manual_seed(config.seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, config.hidden),
        torch.nn.Linear(config.hidden, N_OUTPUTS),
    )


def fit(module: torch.nn.Module, splits: RegressionSplits, config: SeedMlpConfig) -> FitHistory:
    """Adam on MSE with early stopping; leaves `module` in eval mode with its best-on-validation weights."""
    x_train, y_train = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    x_val, y_val = torch.from_numpy(splits.x_val), torch.from_numpy(splits.y_val)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    loss_fn = torch.nn.MSELoss()
    shuffle = torch.Generator().manual_seed(config.seed)

    best_state = _snapshot(module)
    best_val, best_epoch, stale, epoch = math.inf, 0, 0, 0
    for epoch in range(1, config.epochs + 1):
        module.train()
        order = torch.randperm(len(x_train), generator=shuffle)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(module(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        module.eval()
        with torch.inference_mode():
            val_mse = float(loss_fn(module(x_val), y_val))
        if val_mse < best_val:
            best_val, best_epoch, stale = val_mse, epoch, 0
            best_state = _snapshot(module)
        else:
            stale += 1
            if stale >= config.patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    return FitHistory(epochs_run=epoch, best_epoch=best_epoch, best_val_mse=best_val)


def evaluate(module: torch.nn.Module, inputs: Array, targets: Array) -> dict[str, float]:
    """MSE, MAE and R² (the mean of the per-output R², as scikit-learn's default) in float64."""
    with torch.inference_mode():
        predicted = module(torch.from_numpy(inputs)).numpy().astype(np.float64)
    expected = targets.astype(np.float64)
    error = predicted - expected
    residual = np.sum(error**2, axis=0)
    total = np.sum((expected - expected.mean(axis=0)) ** 2, axis=0)
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(np.mean(1.0 - residual / total)),
    }


def fit_seed_mlp(config: SeedMlpConfig) -> FitResult:
    splits = make_dataset(config)
    module = build_module(config)
    history = fit(module, splits, config)
    metrics = {**evaluate(module, splits.x_test, splits.y_test), "val_mse": history.best_val_mse}
    params = {
        **config.hyperparameters(),
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch,
        "n_features": N_FEATURES,
        "n_outputs": N_OUTPUTS,
        "n_train": len(splits.x_train),
        "n_val": len(splits.x_val),
        "n_test": len(splits.x_test),
        "optimizer": "adam",
        "loss": "mse",
    }
    return FitResult(
        module=module,
        test_inputs=splits.x_test,
        metrics=metrics,
        params=params,
        dataset_hash=dataset_hash(splits.arrays()),
        description=(
            f"Seed MLP Linear({N_FEATURES}, {config.hidden}) -> Linear({config.hidden}, {N_OUTPUTS}) "
            "on synthetic linear regression data"
        ),
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


SEED_MLP = Recipe(
    name=RECIPE_NAME,
    task="regression",
    default_config=SeedMlpConfig(),
    fit=fit_seed_mlp,
    primary_metric="mse",
    primary_metric_goal="minimize",
)
