"""Recipes and their configs: determinism, quality and the errors a caller sees for a bad request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from maas.errors import InvalidInput
from maas.training import TrainedModel, recipe_names, train_recipe
from maas.training.lineage import code_version, dataset_hash
from maas.training.recipe import apply_overrides
from maas.training.seed_mlp import SeedMlpConfig, fit_seed_mlp, make_dataset

SMALL = SeedMlpConfig(n_samples=400, epochs=3)


def test_same_seed_gives_the_same_dataset_curves_and_weights() -> None:
    first, second = fit_seed_mlp(SMALL), fit_seed_mlp(SMALL)

    assert first.dataset_hash == second.dataset_hash
    assert first.history == second.history
    for (name, tensor), (_, other) in zip(
        first.module.state_dict().items(), second.module.state_dict().items(), strict=True
    ):
        assert torch.equal(tensor, other), name


def test_another_seed_gives_another_dataset() -> None:
    assert dataset_hash(make_dataset(SMALL).arrays()) != dataset_hash(
        make_dataset(apply_overrides(SMALL, {"seed": 1})).arrays()
    )


def test_trained_model_records_the_hash_of_the_data_it_saw(seed_model: TrainedModel) -> None:
    expected = dataset_hash(make_dataset(SeedMlpConfig(epochs=3)).arrays())

    assert seed_model.draft.lineage.dataset_hash == expected


def test_default_config_learns_the_linear_task() -> None:
    trained = train_recipe("seed-mlp")

    assert trained.draft.metrics["r2"] > 0.9
    assert trained.draft.params["epochs_run"] <= SeedMlpConfig().epochs
    assert trained.draft.metrics["val_mse"] > 0


def test_splits_are_disjoint_and_cover_every_sample() -> None:
    splits = make_dataset(SMALL)

    assert [len(split.targets) for split in (splits.train, splits.val, splits.test)] == [280, 60, 60]
    assert sum(len(a) for a in splits.arrays()[1::2]) == SMALL.n_samples


def test_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="seed-mlp"):
        train_recipe("no-such-recipe")
    assert recipe_names() == ["digits-resnet", "minilm-embed", "seed-mlp", "smollm2-135m", "text-bert"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": 0.1}, "unknown field"),
        ({"epochs": "3"}, "epochs: expected an integer, got str"),
        ({"epochs": True}, "epochs: expected an integer, got bool"),
        ({"external_data": 1}, "external_data: expected a boolean, got int"),
        ({"epochs": 0}, "epochs: expected an integer >= 1"),
        ({"lr": -0.1}, "lr: expected a number > 0"),
        ({"seed": -1}, "seed: expected an integer >= 0"),
        ({"test_fraction": 0.5}, "test_fraction: expected a number in"),
    ],
)
def test_bad_overrides_are_refused_before_training(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        train_recipe("seed-mlp", overrides)


def test_integer_override_for_a_float_field_is_accepted() -> None:
    assert apply_overrides(SeedMlpConfig(), {"lr": 1}).lr == 1.0


def test_hyperparameters_leave_out_export_options() -> None:
    params = SeedMlpConfig(external_data=True).hyperparameters()

    assert "external_data" not in params
    assert "parity_tolerance" not in params
    assert params["lr"] == 0.01


def test_code_version_outside_a_git_checkout_is_the_package_version(tmp_path: Path) -> None:
    assert code_version(tmp_path) == "0.1.0"
