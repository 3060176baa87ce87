"""Tiny modules "trained elsewhere", importable as `tests.functional.training.byo_fixtures:<factory>`."""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 4
TARGETS = 2
VOCAB = 8
CLASSES = 3


class Regressor(nn.Module):
    """[batch, 4] floats -> [batch, 2] floats."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES, 8)
        self.head = nn.Linear(8, TARGETS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.head(torch.relu(self.hidden(x)))
        return y


def make_regressor() -> nn.Module:
    return Regressor()


class FeaturesAndIds(nn.Module):
    """Two inputs: [batch, 4] floats and [batch, 3] token ids, pooled into [batch, 3] scores."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, FEATURES)
        self.head = nn.Linear(FEATURES, CLASSES)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.head(features + self.embedding(ids).mean(dim=1))
        return scores


class ExportsDifferently(Regressor):
    """Runs one way in eager mode and exports another: exactly what a parity check exists to catch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y + 1.0 if torch.onnx.is_in_onnx_export() else y


def make_exports_differently() -> nn.Module:
    return ExportsDifferently()


def not_a_module() -> object:
    return 42


def needs_a_width(width: int) -> nn.Module:
    return nn.Linear(width, 1)
