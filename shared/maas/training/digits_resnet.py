"""A small ResNet on scikit-learn's bundled 8x8 digits: the first real image classifier on the platform.

The data ships with scikit-learn, so training is offline and exactly repeatable, yet it is a real task with
a known ceiling (about 0.98-0.99 test accuracy for a small CNN): a regression in training, export or
serving shows up as lost accuracy. Clients send raw pixel intensities; the standardization is a layer of
the graph, so no client can forget it or apply the wrong statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from torch import nn

from maas.registry import Normalization, Preprocessing
from maas.training.export import INPUT_NAME
from maas.training.loop import Objective
from maas.training.recipe import FitResult, ModelDetails, Recipe, row_means
from maas.training.supervised import (
    Examples,
    HeldOutSplits,
    SupervisedConfig,
    fit_supervised,
    stratified_split,
)

RECIPE_NAME = "digits-resnet"
N_CLASSES = 10
IMAGE_SIZE = 8
MAX_INTENSITY = 16.0
LABELS = [str(digit) for digit in range(N_CLASSES)]
# A floor under the fitted std, so a degenerate (constant) training split cannot make the graph divide by 0.
_MIN_STD = 1e-6

Images = NDArray[np.float32]


@dataclass(frozen=True)
class DigitsResnetConfig(SupervisedConfig):
    """Defaults reach 0.98-1.0 test accuracy (seeds 0-7) in about 5 s of one CPU core.

    Cosine annealing over few epochs at a high rate: the val split (270 images) saturates early, so a
    long run buys nothing, and the schedule's tail settles the weights the checkpoint keeps.

    `width` is the channel count of the stem and the residual blocks, `depth` the number of residual
    blocks, and `dropout` applies before the classifier."""

    width: int = 16
    depth: int = 2
    lr: float = 5e-3
    epochs: int = 15
    patience: int = 6
    lr_schedule: str = "cosine"
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    dropout: float = 0.1


def make_dataset(config: DigitsResnetConfig) -> HeldOutSplits:
    """Stratified train/validation/test splits drawn from the seed, so one seed is one split everywhere.

    Images as the graph takes them (raw FP32 [N, 1, 8, 8]) and int64 class labels."""
    digits = load_digits()
    images = digits.images.astype(np.float32).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    labels = digits.target.astype(np.int64)
    train, val, test = (
        Examples((np.ascontiguousarray(x),), np.ascontiguousarray(y))
        for x, y in stratified_split(images, labels, config)
    )
    return HeldOutSplits(train=train, val=val, test=test)


def pixel_statistics(x_train: Images) -> tuple[float, float]:
    """The train split's global mean and std of the raw intensities.

    Global rather than per-pixel: convolutions share weights across positions, so every position must be
    on the same scale; per-pixel statistics would also be degenerate on the border pixels that are 0 in
    almost every image. With one channel, global is the usual per-channel normalization of image models."""
    values = x_train.astype(np.float64)
    return float(values.mean()), max(float(values.std()), _MIN_STD)


class Standardize(nn.Module):
    """(x - mean) / std with the statistics as buffers, so they are part of the exported graph."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the identity, then ReLU: He et al.'s basic residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


class DigitsResNet(nn.Module):
    """Raw [N, 1, 8, 8] intensities -> standardize -> stem -> residual blocks -> pool -> logits [N, 10]."""

    def __init__(self, *, mean: float, std: float, width: int, depth: int, dropout: float) -> None:
        super().__init__()
        self.standardize = Standardize(mean, std)
        # Convolutions feeding BatchNorm need no bias: BN's shift replaces it.
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.blocks = nn.Sequential(*(BasicBlock(width) for _ in range(depth)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.blocks(self.stem(self.standardize(x)))).flatten(1)
        logits: torch.Tensor = self.classifier(self.dropout(features))
        return logits


def build_module(config: DigitsResnetConfig, mean: float, std: float) -> DigitsResNet:
    torch.manual_seed(config.seed)
    return DigitsResNet(mean=mean, std=std, width=config.width, depth=config.depth, dropout=config.dropout)


def _accuracy(outputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=1) == targets))


OBJECTIVE = Objective(
    loss=nn.CrossEntropyLoss(), metric=_accuracy, metric_name="accuracy", metric_goal="maximize"
)


def fit_digits_resnet(config: DigitsResnetConfig) -> FitResult:
    splits = make_dataset(config)
    (x_train,) = splits.train.inputs
    mean, std = pixel_statistics(x_train)
    n_total = sum(len(split.targets) for split in (splits.train, splits.val, splits.test))
    details = ModelDetails(
        description=(
            f"ResNet-style CNN ({config.depth} basic block(s) at {config.width} channels, global average "
            f"pooling) classifying 8x8 handwritten digits"
        ),
        labels=list(LABELS),
        intended_use=(
            "Classifying 8x8 grey-scale digit images in scikit-learn's digits format; a real but small "
            "reference classifier for checking the platform's image path end to end."
        ),
        data_description=(
            f"scikit-learn's bundled digits (UCI optical recognition of handwritten digits): {n_total} "
            f"8x8 images with intensities 0..{MAX_INTENSITY:g}, {N_CLASSES} classes; stratified split by "
            f"seed {config.seed} into train, validation ({config.val_fraction:g}) and "
            f"test ({config.test_fraction:g})."
        ),
        limitations=(
            "Only 8x8 images downsampled the way the UCI set was (43 writers, 4x4 block counts); other "
            "resolutions, photographs or inverted intensities are out of distribution. Small test set "
            f"({len(splits.test.targets)} images), so accuracy is measured to about one percentage point."
        ),
        preprocessing=Preprocessing(
            description=(
                "raw 8x8 pixel intensities 0..16 as FP32 [N,1,8,8]; standardized inside the graph with "
                "the train split's mean and std"
            ),
            normalization=[Normalization(input=INPUT_NAME, mean=[mean], std=[std])],
        ),
        # Per pixel, unlike the global normalization: a baseline image is the average digit.
        input_means={INPUT_NAME: row_means(x_train)},
    )
    params = {
        "n_classes": N_CLASSES,
        "image_size": IMAGE_SIZE,
        "loss": "cross_entropy",
        "normalization": "global",
    }
    module = build_module(config, mean, std)
    return fit_supervised(
        module, splits, OBJECTIVE, config, recipe=RECIPE_NAME, params=params, details=details
    )


DIGITS_RESNET = Recipe(
    name=RECIPE_NAME,
    task="classification",
    default_config=DigitsResnetConfig(),
    fit=fit_digits_resnet,
    primary_metric="accuracy",
    primary_metric_goal="maximize",
)
