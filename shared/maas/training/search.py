"""Hyperparameter search with Optuna: grid, random or TPE over a space written in the config file.

Trials are scored on the validation split (the recipe's early-stopping metric), never on the test set,
so the test metrics of the exported best trial stay an honest estimate.

A space maps config field names to either a list of choices or a range:

    lr: {low: 0.0001, high: 0.1, log: true}
    width: [16, 32, 64]
    optimizer: [adam, sgd]
    depth: {low: 1, high: 3}          # integers when both bounds are integers

Grid search needs every entry to be a list.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import optuna

from maas.errors import InvalidInput, MaasError
from maas.training.history import SearchSummary, TrialSummary
from maas.training.metrics import improved
from maas.training.recipe import ConfigT, FitResult, Recipe, RecipeConfig, TrainingConfig, apply_overrides

Sampler = Literal["grid", "random", "tpe"]
SAMPLERS: tuple[Sampler, ...] = ("grid", "random", "tpe")
# What a search space may tune; the rest of the config (data, seed, export options) stays fixed.
SEARCHABLE = ("lr", "optimizer", "width", "depth", "batch_size", "dropout", "weight_decay", "lr_schedule")
DEFAULT_TRIALS = 10

Choice = str | int | float | bool


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    integer: bool = False


Dimension = Range | tuple[Choice, ...]


@dataclass(frozen=True)
class SearchPlan:
    sampler: Sampler
    space: Mapping[str, Dimension]
    # None: the whole grid for grid search, DEFAULT_TRIALS otherwise.
    trials: int | None = None


def parse_space(raw: Mapping[str, Any]) -> dict[str, Dimension]:
    """Validate a search space from a config file into typed dimensions, naming any bad entry."""
    space: dict[str, Dimension] = {}
    for name, value in raw.items():
        if name not in SEARCHABLE:
            raise InvalidInput(f"search.space: expected keys among {list(SEARCHABLE)}, got {name!r}")
        if isinstance(value, list | tuple):
            if not value or not all(isinstance(item, Choice) for item in value):
                raise InvalidInput(
                    f"search.space.{name}: expected a non-empty list of numbers or strings, got {value!r}"
                )
            space[name] = tuple(value)
        elif isinstance(value, Mapping):
            space[name] = _parse_range(name, value)
        else:
            raise InvalidInput(
                f"search.space.{name}: expected a list of choices or {{low, high[, log]}}, "
                f"got {type(value).__name__}"
            )
    if not space:
        raise InvalidInput("search.space: expected at least one hyperparameter to search, got none")
    return space


def make_plan(sampler: Sampler | str, space: Mapping[str, Dimension], trials: int | None) -> SearchPlan:
    if sampler not in SAMPLERS:
        raise InvalidInput(f"search: expected a sampler among {list(SAMPLERS)}, got {sampler!r}")
    if trials is not None and trials < 1:
        raise InvalidInput(f"search: expected trials >= 1, got {trials}")
    if sampler == "grid":
        ranges = [name for name, dimension in space.items() if isinstance(dimension, Range)]
        if ranges:
            raise InvalidInput(f"search: grid search needs a list of values for each of {ranges}")
    return SearchPlan(sampler=sampler, space=dict(space), trials=trials)


def run_search(
    recipe: Recipe[ConfigT], base: ConfigT, plan: SearchPlan
) -> tuple[FitResult, ConfigT, SearchSummary]:
    """Run the trials, keep the best fitted model in memory, and summarise every trial."""
    unknown = sorted(set(plan.space) - {f.name for f in dataclasses.fields(base)})
    if unknown:
        raise InvalidInput(f"search.space: recipe {recipe.name!r} has no field(s) {unknown}")
    _check_values(base, plan.space)
    # Recipes early-stop on their primary metric measured on the validation split, so it sets the direction.
    goal = recipe.primary_metric_goal
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=goal, sampler=_sampler(plan, base.seed))
    best: dict[int, tuple[FitResult, ConfigT]] = {}
    records: dict[int, int] = {}
    failures: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, dimension) for name, dimension in plan.space.items()}
        try:
            config = apply_overrides(base, params)
            if getattr(config, "checkpoint_dir", ""):
                # One folder per trial, so the kept checkpoint is the exported trial's, not the last one's.
                directory = f"{config.checkpoint_dir}/trial-{trial.number}"  # type: ignore[attr-defined]
                config = dataclasses.replace(config, checkpoint_dir=directory)  # type: ignore[call-arg]
            fitted = recipe.fit(config)
        except MaasError as exc:
            # A combination the recipe refuses (e.g. a width its heads don't divide) or a diverged run fails
            # this trial only; the others still count.
            failures.append(f"trial {trial.number}: {exc.message}")
            raise optuna.TrialPruned(exc.message) from None
        score = fitted.validation_score
        records[trial.number] = fitted.history.epochs_run if fitted.history else 0
        if improved(score, _best_score(best), goal):
            best.clear()
            best[trial.number] = (fitted, config)
        return score

    study.optimize(objective, n_trials=_trial_count(plan), catch=(FloatingPointError,))
    if not best:
        reason = f"; first failure: {failures[0]}" if failures else ""
        raise InvalidInput(
            f"search: expected a trial with a finite validation score, got none in {len(study.trials)} "
            f"trials{reason}"
        )
    [(best_number, (fitted, config))] = best.items()
    summary = SearchSummary(
        sampler=plan.sampler,
        metric_name=fitted.history.metric_name if fitted.history else recipe.primary_metric,
        metric_goal=goal,
        trials=[
            TrialSummary(
                number=trial.number,
                params=dict(trial.params),
                value=trial.value if trial.value is not None and math.isfinite(trial.value) else None,
                state=trial.state.name.lower(),
                epochs_run=records.get(trial.number, 0),
            )
            for trial in study.trials
        ],
        best_trial=best_number,
    )
    return fitted, config, summary


def _best_score(best: Mapping[int, tuple[FitResult, Any]]) -> float:
    return next(iter(best.values()))[0].validation_score if best else math.nan


def _sampler(plan: SearchPlan, seed: int) -> optuna.samplers.BaseSampler:
    if plan.sampler == "grid":
        grid = {
            name: list(dimension) for name, dimension in plan.space.items() if isinstance(dimension, tuple)
        }
        return optuna.samplers.GridSampler(grid, seed=seed)
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _trial_count(plan: SearchPlan) -> int:
    if plan.sampler == "grid":
        size = math.prod(len(d) for d in plan.space.values() if isinstance(d, tuple))
        return min(size, plan.trials) if plan.trials is not None else size
    return plan.trials if plan.trials is not None else DEFAULT_TRIALS


def _check_values(base: RecipeConfig, space: Mapping[str, Dimension]) -> None:
    """Every choice and both ends of every range must be a value the config accepts, checked before any
    trial runs: a typo should cost nothing, not the trials that happened to come before it."""
    for name, dimension in space.items():
        values: Sequence[Choice]
        if isinstance(dimension, Range):
            values = (
                (int(dimension.low), int(dimension.high))
                if dimension.integer
                else (dimension.low, dimension.high)
            )
        else:
            values = dimension
        for value in values:
            apply_overrides(base, {name: value})


def _suggest(trial: optuna.Trial, name: str, dimension: Dimension) -> Choice:
    if isinstance(dimension, Range):
        if dimension.integer:
            return trial.suggest_int(name, int(dimension.low), int(dimension.high), log=dimension.log)
        return trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)
    # Optuna types categorical choices without bool; every choice came from our own tuple.
    return cast(Choice, trial.suggest_categorical(name, list(dimension)))


def _parse_range(name: str, value: Mapping[str, Any]) -> Range:
    extra = sorted(set(value) - {"low", "high", "log"})
    low, high, log = value.get("low"), value.get("high"), value.get("log", False)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if extra or not numbers or not isinstance(log, bool):
        raise InvalidInput(
            f"search.space.{name}: expected {{low: number, high: number, log: bool}}, got {dict(value)!r}"
        )
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if not low < high or (log and low <= 0):
        raise InvalidInput(
            f"search.space.{name}: expected low < high (and low > 0 with log), got low={low}, high={high}"
        )
    return Range(
        low=float(low), high=float(high), log=log, integer=isinstance(low, int) and isinstance(high, int)
    )


def trial_table(trials: Sequence[TrialSummary]) -> list[tuple[str, ...]]:
    """Rows for printing a search's trials in a terminal table."""
    names = sorted({key for trial in trials for key in trial.params})
    rows: list[tuple[str, ...]] = [("TRIAL", *(n.upper() for n in names), "VALUE", "STATE")]
    for trial in trials:
        value = "-" if trial.value is None else f"{trial.value:.6g}"
        rows.append((str(trial.number), *(str(trial.params.get(n, "")) for n in names), value, trial.state))
    return rows


def default_space(sampler: str, config: TrainingConfig) -> dict[str, Dimension]:
    """A space around the recipe's defaults, for `--search` without a space in the config file."""
    width = (max(1, config.width // 2), config.width, config.width * 2)
    if sampler == "grid":
        return {"lr": (config.lr / 3, config.lr, config.lr * 3), "width": width}
    return {
        "lr": Range(low=config.lr / 10, high=config.lr * 10, log=True),
        "width": width,
        "dropout": Range(low=0.0, high=0.3),
    }
