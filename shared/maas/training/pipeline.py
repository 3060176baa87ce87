"""Train, export, evaluate, check, report, publish: the same steps and guarantees for every recipe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maas.errors import InvalidInput
from maas.registry import Manifest, ManifestDraft, ModelRegistry
from maas.training.card import render_report
from maas.training.digits_resnet import DIGITS_RESNET
from maas.training.export import GraphSpec, compare_outputs, export_onnx, onnx_outputs, torch_outputs
from maas.training.history import SearchSummary
from maas.training.importance import measure_feature_importance
from maas.training.lineage import build_lineage
from maas.training.llm.recipes import LLM_RECIPES
from maas.training.metrics import evaluate
from maas.training.minilm_embed import MINILM_EMBED
from maas.training.onnx_checks import check_onnx, external_data_files, open_session, signature_of
from maas.training.publish_gates import ensure_publishable
from maas.training.recipe import FitResult, Recipe, RecipeConfig, apply_overrides
from maas.training.report import ModelReport
from maas.training.search import SearchPlan, run_search
from maas.training.seed_mlp import SEED_MLP
from maas.training.text_bert import TEXT_BERT

RECIPES: dict[str, Recipe[Any]] = {
    recipe.name: recipe for recipe in (SEED_MLP, DIGITS_RESNET, TEXT_BERT, MINILM_EMBED)
}
EXAMPLE_BATCH = 4


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained module with its checked ONNX files, its report and the manifest draft that describes them."""

    recipe: str
    module: torch.nn.Module
    graph: GraphSpec
    files: dict[str, bytes]
    draft: ManifestDraft
    fit: FitResult
    search: SearchSummary | None = None

    @property
    def test_inputs(self) -> dict[str, np.ndarray]:
        return self.fit.test_inputs

    def predict(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """The torch reference for the first output, to compare a served model against.

        A bare array is the input of a single-input model."""
        named = inputs if isinstance(inputs, Mapping) else {self.graph.inputs[0]: inputs}
        output = torch_outputs(self.module, named, self.graph)[0]
        return output.astype(np.float32, copy=False) if output.dtype == np.float64 else output


def recipe_names() -> list[str]:
    """Every recipe `maas train` takes: the trained ones here and the imported LLMs (maas.training.llm)."""
    return sorted([*RECIPES, *LLM_RECIPES])


def recipe(name: str) -> Recipe[Any]:
    """A recipe that trains; an LLM recipe has no training config and is built by maas.training.llm."""
    if name in LLM_RECIPES:
        raise InvalidInput(
            f"recipe: {name!r} imports a pretrained LLM and trains nothing; build it with "
            "maas.training.llm.build.build_llm (`maas train` does)"
        )
    try:
        return RECIPES[name]
    except KeyError:
        raise InvalidInput(f"recipe: expected one of {recipe_names()}, got {name!r}") from None


def train_recipe(
    name: str, overrides: Mapping[str, Any] | None = None, *, search: SearchPlan | None = None
) -> TrainedModel:
    """Fit a recipe (or search its hyperparameters and keep the best trial), export it and check it.

    A failed parity is recorded, not raised: the caller sees the numbers, and publishing refuses it."""
    chosen = recipe(name)
    config = apply_overrides(chosen.default_config, overrides)
    summary: SearchSummary | None = None
    if search is None:
        fitted = chosen.fit(config)
    else:
        fitted, config, summary = run_search(chosen, config, search)
    return export_trained(chosen, config, fitted, summary)


def export_trained(
    chosen: Recipe[Any], config: RecipeConfig, fitted: FitResult, search: SearchSummary | None = None
) -> TrainedModel:
    """Export, check and evaluate a fitted module through onnxruntime, and write its model card.

    The test metrics and the permutation feature importance come from the exported graph, so they
    describe what will actually be served."""
    example = {name: array[:EXAMPLE_BATCH] for name, array in fitted.test_inputs.items()}
    graph_files = export_onnx(fitted.module, example, fitted.graph, external_data=config.external_data)
    check_onnx(graph_files)
    session = open_session(graph_files)
    reference = torch_outputs(fitted.module, fitted.test_inputs, fitted.graph)
    served = onnx_outputs(session, fitted.test_inputs)
    parity = compare_outputs(reference, served, fitted.graph.outputs, tolerance=config.parity_tolerance)
    metrics, evaluation = evaluate(
        chosen.task,
        served[0],
        targets=fitted.test_targets,
        reference=reference[0],
        labels=fitted.details.labels,
    )
    if fitted.history is not None:
        metrics[f"val_{fitted.history.metric_name}"] = fitted.history.best_val_metric
    params = dict(fitted.params)
    if search is not None:
        params["search"] = {
            "sampler": search.sampler,
            "trials": len(search.trials),
            "best_trial": search.best_trial,
            "metric": f"val_{search.metric_name}",
        }
    draft = ManifestDraft(
        task=chosen.task,
        primary_metric=chosen.primary_metric,
        primary_metric_goal=chosen.primary_metric_goal,
        description=fitted.details.description,
        model_data_files=external_data_files(graph_files),
        signature=signature_of(session),
        metrics=metrics,
        evaluation=evaluation,
        params=params,
        lineage=build_lineage(chosen.name, fitted.dataset_hash, config.seed),
        parity=parity,
        labels=fitted.details.labels,
        preprocessing=fitted.details.preprocessing,
        input_means=fitted.details.input_means,
        feature_importance=measure_feature_importance(
            session,
            fitted,
            task=chosen.task,
            metric=chosen.primary_metric,
            goal=chosen.primary_metric_goal,
        ),
    )
    files = {**graph_files, **fitted.details.extra_files}
    files.update(render_report(report_for(chosen.name, draft, fitted, search)))
    return TrainedModel(
        recipe=chosen.name,
        module=fitted.module,
        graph=fitted.graph,
        files=files,
        draft=draft,
        fit=fitted,
        search=search,
    )


def report_for(
    name: str, draft: ManifestDraft, fitted: FitResult, search: SearchSummary | None
) -> ModelReport:
    return ModelReport.of_draft(
        name,
        draft,
        intended_use=fitted.details.intended_use,
        data_description=fitted.details.data_description,
        limitations=fitted.details.limitations,
        history=fitted.history,
        search=search,
    )


def publish_trained(trained: TrainedModel, registry: ModelRegistry, name: str | None = None) -> Manifest:
    """Publish a new immutable version, under the recipe's name unless `name` is given."""
    ensure_publishable(trained.draft)
    return registry.publish(name or trained.recipe, trained.files, trained.draft)


def train_and_publish(
    name: str,
    registry: ModelRegistry,
    publish_as: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Manifest:
    return publish_trained(train_recipe(name, overrides), registry, publish_as)
