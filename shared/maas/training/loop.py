"""The one training loop every recipe uses: mini-batches, a validation metric, early stopping on it,
an optional LR schedule, checkpoints of the best weights, seeded determinism and a progress bar.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from maas.training.errors import ModelCheckFailed
from maas.training.history import EpochRecord, History
from maas.training.metric_goals import MetricGoal
from maas.training.metrics import improved
from maas.training.recipe import TrainingConfig

BEST_CHECKPOINT = "best.pt"
# torch's legacy (pre-zip) save format starts with a pickle of this magic number.
_LEGACY_TORCH_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_LEGACY_HEAD_BYTES = 32
EVAL_BATCH = 512

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (outputs, targets) of the whole validation split -> the validation metric.
MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True, eq=False)
class Split:
    """One split as tensors: the module's positional inputs and the targets."""

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Objective:
    loss: LossFn
    metric: MetricFn
    metric_name: str
    metric_goal: MetricGoal


def train_loop(
    module: torch.nn.Module,
    train: Split,
    val: Split,
    objective: Objective,
    config: TrainingConfig,
    *,
    description: str = "training",
) -> History:
    """Fit `module`, keep the weights of the best validation epoch, and leave it in eval mode with them.

    The best weights go through a real checkpoint (a state_dict saved with torch.save and read back with
    weights_only=True), so what the run ends with is exactly what a resumed or audited run would load.
    """
    optimizer = make_optimizer(module, config)
    scheduler = make_scheduler(optimizer, config, objective.metric_goal)
    shuffle = torch.Generator().manual_seed(config.seed)
    records: list[EpochRecord] = []
    best_metric, best_epoch, stale = math.nan, 0, 0
    stopped_early = False
    with _checkpoint_dir(config.checkpoint_dir) as directory, seeded(config.seed):
        best_path = directory / BEST_CHECKPOINT
        save_checkpoint(module.state_dict(), best_path)
        # disable=None: shown on a terminal, silent in logs and CI.
        bar = tqdm(
            range(1, config.epochs + 1),
            desc=description,
            unit="epoch",
            disable=None if config.progress else True,
        )
        for epoch in bar:
            train_loss = _train_epoch(
                module, train, objective.loss, optimizer=optimizer, config=config, shuffle=shuffle, bar=bar
            )
            val_loss, val_metric = evaluate_split(module, val, objective)
            lr = float(optimizer.param_groups[0]["lr"])
            records.append(EpochRecord(epoch, train_loss, val_loss, val_metric, lr))
            bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{val_metric:.4g}")
            if improved(val_metric, best_metric, objective.metric_goal):
                best_metric, best_epoch, stale = val_metric, epoch, 0
                save_checkpoint(module.state_dict(), best_path)
            else:
                stale += 1
            _step(scheduler, val_metric)
            if stale >= config.patience:
                stopped_early = epoch < config.epochs
                break
        bar.close()
        if best_epoch == 0:
            raise ModelCheckFailed(
                f"training: expected a finite validation {objective.metric_name} in some epoch, got "
                f"{[record.val_metric for record in records][:5]}; the run diverged (try a lower lr)"
            )
        module.load_state_dict(load_checkpoint(best_path))
    module.eval()
    return History(
        metric_name=objective.metric_name,
        metric_goal=objective.metric_goal,
        epochs=records,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
    )


def evaluate_split(module: torch.nn.Module, split: Split, objective: Objective) -> tuple[float, float]:
    """(loss, metric) of the module on a whole split, in eval mode."""
    outputs = predict(module, split.inputs)
    loss = float(objective.loss(outputs, split.targets))
    return loss, float(objective.metric(outputs.numpy(), split.targets.numpy()))


def predict(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    module.eval()
    count = len(inputs[0])
    with torch.inference_mode():
        chunks = [
            module(*(tensor[start : start + EVAL_BATCH] for tensor in inputs))
            for start in range(0, count, EVAL_BATCH)
        ]
    return torch.cat(chunks)


def make_optimizer(module: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    params = module.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig, goal: MetricGoal) -> Scheduler:
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "plateau":
        # Halve the LR when the validation metric stalls for half the early-stopping patience.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min" if goal == "minimize" else "max",
            factor=0.5,
            patience=max(1, config.patience // 2),
        )
    return None


def save_checkpoint(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state_dict atomically: a reader never sees a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save({key: value.detach().clone() for key, value in state.items()}, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from `path`, read with weights_only=True so a pickle can never run code.

    A corrupt file, a pickled module or any object that is not tensors by name is refused by name."""
    if not path.is_file():
        raise ModelCheckFailed(f"checkpoint {path}: expected a file, found none")
    _refuse_non_torch_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelCheckFailed(
            f"checkpoint {path}: expected a state_dict loadable with weights_only=True, got an object "
            f"that needs arbitrary unpickling ({first[:200]}); save module.state_dict(), not the module"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelCheckFailed(
            f"checkpoint {path}: expected a torch.save file, got unreadable bytes ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ModelCheckFailed(
            f"checkpoint {path}: expected a state_dict (tensors by parameter name), "
            f"got {type(state).__name__}"
        )
    return state


def load_state_dict_strictly(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module`, refusing any missing, unexpected or misshapen key and naming them all.

    torch's own strict load stops at the first problem with a long trace; a user fixing a checkpoint wants
    the whole list, and `source` (a file, a package) says which checkpoint it is."""
    own = module.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    if missing or unexpected:
        raise ModelCheckFailed(
            f"weights {source}: expected the module's {len(own)} state_dict keys, got missing "
            f"{_listed(missing)} and unexpected {_listed(unexpected)}"
        )
    mismatched = [
        f"{key}: expected {list(own[key].shape)}, got {list(value.shape)}"
        for key, value in state.items()
        if value.shape != own[key].shape
    ]
    if mismatched:
        raise ModelCheckFailed(f"weights {source}: shapes differ from the module's: {_listed(mismatched)}")
    module.load_state_dict(state, strict=True)


def _listed(items: Sequence[str], limit: int = 10) -> str:
    shown = list(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else str(shown)


def _refuse_non_torch_file(path: Path) -> None:
    """torch.save writes a zip archive (or, in the legacy format, a pickle holding torch's magic number).

    Anything else would reach the weights-only unpickler, which fails on random bytes exactly as on a
    pickled module; telling them apart first keeps "save the state_dict" advice for the second."""
    with path.open("rb") as stream:
        head = stream.read(_LEGACY_HEAD_BYTES)
    if zipfile.is_zipfile(path) or (head[:1] == b"\x80" and _LEGACY_TORCH_MAGIC in head):
        return
    raise ModelCheckFailed(
        f"checkpoint {path}: expected a torch.save file, got unreadable bytes (neither a zip archive nor "
        "torch's legacy format)"
    )


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed every generator training touches, make torch pick deterministic kernels, and use one thread.

    The thread count changes the order of float reductions, so the same seed would train different
    weights on machines with different core counts; pinned, a seed is one model everywhere. The recipes'
    ops are small enough that one thread is also faster than two on a two-core machine (measured 3x)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def _train_epoch(
    module: torch.nn.Module,
    train: Split,
    loss_fn: LossFn,
    *,
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
    shuffle: torch.Generator,
    bar: tqdm[int],
) -> float:
    module.train()
    order = torch.randperm(len(train), generator=shuffle)
    total, seen = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        optimizer.zero_grad()
        loss = loss_fn(module(*(tensor[batch] for tensor in train.inputs)), train.targets[batch])
        loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        optimizer.step()
        total += loss.item() * len(batch)
        seen += len(batch)
        # tqdm throttles redraws itself (mininterval), so refreshing per batch keeps the loss live cheaply.
        bar.set_postfix(loss=f"{total / seen:.4g}")
    return total / max(seen, 1)


def _step(scheduler: Scheduler, val_metric: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_metric)
    elif scheduler is not None:
        scheduler.step()


@contextmanager
def _checkpoint_dir(configured: str) -> Iterator[Path]:
    if configured:
        yield Path(configured)
        return
    with tempfile.TemporaryDirectory(prefix="maas-checkpoints-") as tmp:
        yield Path(tmp)
