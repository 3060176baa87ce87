"""The shared training loop: early stopping, LR schedules, checkpoints and weights-only loading."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from maas.registry import ModelRegistry
from maas.training import ModelCheckFailed
from maas.training.loop import BEST_CHECKPOINT, evaluate_split, load_checkpoint, save_checkpoint
from maas.training.seed_mlp import OBJECTIVE, SeedMlpConfig, fit_seed_mlp

SMALL = SeedMlpConfig(n_samples=300, epochs=12, progress=False)


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch() -> None:
    # SGD at this learning rate overshoots, so validation stops improving and patience runs out.
    result = fit_seed_mlp(SeedMlpConfig(n_samples=300, epochs=200, patience=2, lr=1.0, optimizer="sgd"))

    history = result.history
    assert history is not None
    assert history.stopped_early
    assert history.epochs_run < 200
    assert history.epochs_run - history.best_epoch == 2
    best = min(r.val_metric for r in history.epochs if not math.isnan(r.val_metric))
    assert history.best_val_metric == best


def test_the_module_ends_with_the_best_epochs_weights(tmp_path: Path) -> None:
    from maas.training.seed_mlp import make_dataset

    config = SeedMlpConfig(n_samples=300, epochs=12, checkpoint_dir=str(tmp_path))
    result = fit_seed_mlp(config)
    splits = make_dataset(config)
    val = splits.val.tensors()

    _, metric = evaluate_split(result.module, val, OBJECTIVE)

    assert result.history is not None
    assert metric == pytest.approx(result.history.best_val_metric, rel=1e-6)
    saved = load_checkpoint(tmp_path / BEST_CHECKPOINT)
    for name, tensor in result.module.state_dict().items():
        assert torch.equal(saved[name], tensor), name


def test_cosine_schedule_lowers_the_learning_rate_each_epoch() -> None:
    result = fit_seed_mlp(SeedMlpConfig(n_samples=300, epochs=6, patience=100, lr_schedule="cosine"))

    assert result.history is not None
    rates = [record.lr for record in result.history.epochs]
    assert rates[0] == pytest.approx(0.01)
    assert all(later < earlier for earlier, later in itertools.pairwise(rates))


def test_constant_schedule_keeps_the_learning_rate() -> None:
    result = fit_seed_mlp(SeedMlpConfig(n_samples=300, epochs=3, patience=100))

    assert result.history is not None
    assert {record.lr for record in result.history.epochs} == {0.01}


def test_checkpoint_round_trips_a_state_dict(tmp_path: Path) -> None:
    state = {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.zeros(2)}
    save_checkpoint(state, tmp_path / "model.pt")

    loaded = load_checkpoint(tmp_path / "model.pt")

    assert set(loaded) == {"weight", "bias"}
    assert torch.equal(loaded["weight"], state["weight"])
    assert not (tmp_path / "model.pt.partial").exists()


def test_a_corrupted_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint({"weight": torch.ones(3)}, path)
    path.write_bytes(path.read_bytes()[:40])

    with pytest.raises(ModelCheckFailed, match=r"expected a torch\.save file, got unreadable bytes"):
        load_checkpoint(path)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(bytes(range(256)) * 4)

    with pytest.raises(ModelCheckFailed, match="checkpoint"):
        load_checkpoint(path)


def test_a_pickled_module_is_refused_because_it_needs_full_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2), path)

    with pytest.raises(ModelCheckFailed, match="weights_only=True") as raised:
        load_checkpoint(path)

    assert "save module.state_dict()" in raised.value.message


def test_something_other_than_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save([torch.ones(2)], path)

    with pytest.raises(ModelCheckFailed, match="expected a state_dict"):
        load_checkpoint(path)


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelCheckFailed, match="expected a file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_a_run_that_never_reaches_a_finite_validation_metric_is_refused() -> None:
    with pytest.raises(ModelCheckFailed, match="diverged"):
        fit_seed_mlp(SeedMlpConfig(n_samples=300, epochs=2, lr=1e6, optimizer="sgd"))


def test_a_non_finite_metric_is_never_published(registry: ModelRegistry, s3: Any) -> None:
    from maas.training import publish_trained, train_recipe

    trained = train_recipe("seed-mlp", {"n_samples": 300, "epochs": 2})
    broken = dataclasses.replace(
        trained, draft=trained.draft.model_copy(update={"metrics": {**trained.draft.metrics, "r2": math.nan}})
    )

    with pytest.raises(ModelCheckFailed, match=r"finite values, got NaN or infinity for \['r2'\]"):
        publish_trained(broken, registry)
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0


def test_a_test_split_too_small_for_r2_is_refused_before_training() -> None:
    from maas.errors import InvalidInput

    with pytest.raises(InvalidInput, match="at least 2 test samples"):
        SeedMlpConfig(n_samples=20, test_fraction=0.01)
