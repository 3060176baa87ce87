"""Hyperparameter search: every sampler runs end to end on a tiny space, and the best trial is exported."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.registry import ModelRegistry
from maas.training import publish_trained, train_recipe
from maas.training.run_config import load_run_config, parse_run_config
from maas.training.search import Range, make_plan, parse_space

TINY = {"n_samples": 300, "epochs": 3}


def _best(trials: Any) -> Any:
    finished = [t for t in trials if t.value is not None]
    return min(finished, key=lambda t: t.value)


def test_grid_search_tries_the_whole_grid_and_publishes_the_best_trial(registry: ModelRegistry) -> None:
    plan = make_plan("grid", parse_space({"lr": [0.001, 0.03], "width": [4, 16]}), trials=None)

    trained = train_recipe("seed-mlp", TINY, search=plan)
    manifest = publish_trained(trained, registry)

    search = trained.search
    assert search is not None
    assert len(search.trials) == 4
    assert {(t.params["lr"], t.params["width"]) for t in search.trials} == {
        (0.001, 4),
        (0.001, 16),
        (0.03, 4),
        (0.03, 16),
    }
    best = _best(search.trials)
    assert search.best_trial == best.number
    assert manifest.params["lr"] == best.params["lr"]
    assert manifest.params["width"] == best.params["width"]
    assert manifest.params["search"] == {
        "sampler": "grid",
        "trials": 4,
        "best_trial": best.number,
        "metric": "val_mse",
    }
    # The exported model is the best trial's: its validation score is the one the search recorded.
    assert manifest.metrics["val_mse"] == pytest.approx(best.value)
    card = registry.read_artifact(manifest, manifest.artifact("card.md")).decode()
    rows = _table_rows(_section(card, "Hyperparameter search"))
    trial_rows = [row for row in rows if row and row[0].split()[0].isdigit()]
    assert sorted(int(row[0].split()[0]) for row in trial_rows) == [t.number for t in search.trials]
    [best_row] = [row for row in trial_rows if "best" in row[0]]
    assert int(best_row[0].split()[0]) == best.number


def _section(card: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", card, flags=re.MULTILINE | re.DOTALL)
    assert match is not None, f"no section {heading!r}"
    return match.group(1)


def _table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_random_and_tpe_search_run_the_requested_trials(sampler: str) -> None:
    plan = make_plan(
        sampler, parse_space({"lr": {"low": 0.001, "high": 0.05, "log": True}, "width": [4, 8]}), 3
    )

    trained = train_recipe("seed-mlp", TINY, search=plan)

    search = trained.search
    assert search is not None and search.sampler == sampler
    assert len(search.trials) == 3
    assert all(0.001 <= t.params["lr"] <= 0.05 for t in search.trials)
    best = _best(search.trials)
    assert trained.draft.params["lr"] == best.params["lr"]


def test_search_is_reproducible_by_seed() -> None:
    plan = make_plan("random", parse_space({"lr": {"low": 0.001, "high": 0.05}}), 2)

    first = train_recipe("seed-mlp", TINY, search=plan).search
    second = train_recipe("seed-mlp", TINY, search=plan).search

    assert first is not None and second is not None
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rate": [0.1]}, "expected keys among"),
        ({"lr": []}, "non-empty list"),
        ({"lr": {"low": 0.1, "high": 0.01}}, "low < high"),
        ({"lr": {"low": 0, "high": 0.1, "log": True}}, "low > 0 with log"),
        ({"lr": "fast"}, "expected a list of choices"),
        ({}, "at least one"),
    ],
)
def test_bad_search_spaces_are_refused_by_name(space: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_space(space)


def test_grid_search_needs_lists() -> None:
    with pytest.raises(InvalidInput, match="grid search needs a list"):
        make_plan("grid", {"lr": Range(0.001, 0.1)}, None)
    with pytest.raises(InvalidInput, match="sampler among"):
        make_plan("bayes", {"lr": (0.1,)}, None)


def test_config_file_holds_overrides_search_and_quantization(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "epochs: 5\nlr: 0.003\n"
        "search:\n  sampler: tpe\n  trials: 4\n  space:\n    width: [8, 16]\n"
        "quantization:\n  max_degradation: 0.02\n  per_channel: true\n",
        encoding="utf-8",
    )

    run = load_run_config(path)

    assert run.overrides == {"epochs": 5, "lr": 0.003}
    assert (run.sampler, run.trials, run.space) == ("tpe", 4, {"width": (8, 16)})
    assert (run.max_degradation, run.per_channel) == (0.02, True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1, 2], "expected a mapping"),
        ({"search": {"samplr": "tpe"}}, "unknown key"),
        ({"search": {"trials": 0}}, "trials: expected an integer >= 1"),
        ({"quantization": {"max_degradation": -1}}, "max_degradation: expected a number >= 0"),
    ],
)
def test_bad_config_files_are_refused_by_name(raw: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_run_config(raw)


def test_a_diverged_trial_fails_alone_and_the_search_goes_on() -> None:
    plan = make_plan("grid", parse_space({"lr": [1e6, 0.01]}), None)

    trained = train_recipe("seed-mlp", {**TINY, "optimizer": "sgd"}, search=plan)

    search = trained.search
    assert search is not None
    states = {t.params["lr"]: (t.state, t.value) for t in search.trials}
    assert states[1e6] == ("pruned", None)
    assert states[0.01][0] == "complete"
    assert trained.draft.params["lr"] == 0.01


def test_a_value_the_recipe_refuses_is_caught_before_any_trial() -> None:
    # text-bert needs a width its 4 heads divide.
    plan = make_plan("grid", parse_space({"width": [8, 6]}), None)

    with pytest.raises(InvalidInput, match="width: expected a multiple of heads"):
        train_recipe("text-bert", {"n_samples": 200, "epochs": 1}, search=plan)


def test_values_the_config_refuses_are_caught_before_any_trial() -> None:
    plan = make_plan("grid", parse_space({"optimizer": ["adam", "rmsprop"]}), None)

    with pytest.raises(InvalidInput, match="optimizer: expected one of"):
        train_recipe("seed-mlp", TINY, search=plan)


def test_each_trial_keeps_its_own_checkpoint(tmp_path: Path) -> None:
    plan = make_plan("grid", parse_space({"width": [4, 8]}), None)

    trained = train_recipe("seed-mlp", {**TINY, "checkpoint_dir": str(tmp_path)}, search=plan)

    assert trained.search is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trial-0", "trial-1"]
    from maas.training.loop import load_checkpoint

    kept = load_checkpoint(tmp_path / f"trial-{trained.search.best_trial}" / "best.pt")
    for name, tensor in trained.module.state_dict().items():
        assert kept[name].equal(tensor), name
