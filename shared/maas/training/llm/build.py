"""An LLM recipe's run: import pretrained weights, export fp32 and quantized graphs, check, measure, publish.

No training loop, so it does not go through the supervised pipeline, but it keeps that pipeline's
guarantees: every version is measured through onnxruntime on held-out data (perplexity, the primary
metric), fp32 is shown to match transformers before anything is published, each quantized precision
passes its gate or is refused with its numbers, and each version carries a model card.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from maas.registry import Generation, Lineage, Manifest, ManifestDraft, ModelRegistry
from maas.training.card import render_report
from maas.training.errors import ModelCheckFailed, ParityCheckFailed, QuantizationRefused
from maas.training.lineage import code_version, package_versions
from maas.training.llm import checks
from maas.training.llm.export import (
    TOKENIZER_FILE,
    Precision,
    build_onnx,
    generation_of,
    llm_draft,
    published_files,
)
from maas.training.llm.gguf_import import ImportedWeights
from maas.training.llm.onnx_decoder import OnnxDecoder
from maas.training.llm.perplexity import Perplexity, heldout_text, perplexity
from maas.training.llm.quantize import GREEDY_AGREEMENT, PERPLEXITY
from maas.training.llm.recipes import DATA_DESCRIPTION, LlmRecipe
from maas.training.llm.torch_reference import TorchDecoder
from maas.training.publish_gates import ensure_publishable
from maas.training.report import ModelReport

LLM_PACKAGES = ("torch", "transformers", "gguf", "onnxruntime", "onnxruntime-genai", "tokenizers", "numpy")


@dataclass(frozen=True)
class BuiltVersion:
    """One exported precision, measured, with its draft; `refusal` says why it may not be published."""

    precision: Precision
    folder: Path
    draft: ManifestDraft
    export_seconds: float
    refusal: ModelCheckFailed | None = None

    @property
    def bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.iterdir())


@dataclass(frozen=True)
class Baseline:
    """What every quantized precision is measured against: the fp32 version, the held-out tokens, the
    greedy prompts and fp32's replies to them."""

    hf_folder: Path
    generation: Generation
    heldout_ids: list[int]
    prompts: list[list[int]]
    fp32_replies: list[list[int]]
    fp32: BuiltVersion


@dataclass(frozen=True)
class LlmRun:
    recipe: LlmRecipe
    baseline: Baseline
    quantized: list[BuiltVersion]

    @property
    def fp32(self) -> BuiltVersion:
        return self.baseline.fp32

    def card_files(self, built: BuiltVersion, draft: ManifestDraft | None = None) -> dict[str, bytes]:
        report = ModelReport.of_draft(
            self.recipe.name,
            draft or built.draft,
            intended_use=self.recipe.intended_use,
            data_description=DATA_DESCRIPTION,
            limitations=self.recipe.limitations,
        )
        return render_report(report)


def build_llm(
    recipe: LlmRecipe,
    work_dir: Path,
    precisions: Sequence[Precision] = ("int8", "int4"),
    *,
    weights: ImportedWeights | None = None,
    exported: Mapping[str, Path] | None = None,
) -> LlmRun:
    """Import the weights (unless given), export fp32 and each of `precisions` (unless `exported` already
    holds that precision's folder), and measure them all.

    Nothing raises for a failed check: every version comes back with its numbers and its refusal."""
    weights = weights or recipe.weights(work_dir / "hf")
    exported = exported or {}
    hf = weights.folder
    generation = generation_of(hf)
    ids = Tokenizer.from_file(str(hf / TOKENIZER_FILE)).encode(heldout_text(), add_special_tokens=False).ids
    folder, seconds = _export(recipe, hf, work_dir, "fp32", exported)
    decoder = OnnxDecoder.open(folder, generation)
    reference = TorchDecoder(hf)
    prompts = [reference.chat_prompt_ids(text) for text in checks.GREEDY_PROMPTS]
    parity = checks.logit_parity(reference.logits, decoder.logits, checks.parity_windows(ids))
    greedy = checks.GreedyComparison(
        checks.greedy_replies(reference.greedy, prompts), checks.greedy_replies(decoder.greedy, prompts)
    )
    measured = perplexity(decoder.logits, ids, context_length=generation.context_length)
    torch_measured = perplexity(reference.logits, ids, context_length=generation.context_length)
    del reference, decoder
    lineage = Lineage(
        recipe=recipe.name,
        dataset_hash=hashlib.sha256(heldout_text().encode()).hexdigest(),
        code_version=code_version(),
        packages=package_versions(LLM_PACKAGES),
    )
    params = {"source": weights.source, "source_sha256": weights.source_sha256, "precision": "fp32"}
    draft = llm_draft(
        folder,
        generation,
        description=recipe.description,
        metrics={PERPLEXITY: measured.value, "perplexity_torch": torch_measured.value},
        params=params,
        lineage=lineage,
        parity=parity,
        evaluation={
            "perplexity": _perplexity_facts(measured),
            "greedy_vs_transformers": _greedy_facts(greedy),
        },
    )
    refusal = None
    if not greedy.identical:
        refusal = ParityCheckFailed(
            f"greedy: expected the first {checks.GREEDY_TOKENS} greedy tokens of {len(prompts)} prompts "
            f"identical to transformers' generate, got {greedy.identical_prefix_tokens} of "
            f"{greedy.reference_tokens} tokens before the replies first differ"
        )
    fp32 = BuiltVersion("fp32", folder, draft, seconds, refusal)
    baseline = Baseline(hf, generation, ids, prompts, greedy.candidate, fp32)
    quantized = []
    for precision in precisions:
        folder, seconds = _export(recipe, hf, work_dir, precision, exported)
        quantized.append(measure_quantized(recipe, baseline, precision, folder, seconds))
    return LlmRun(recipe, baseline, quantized)


def measure_quantized(
    recipe: LlmRecipe, baseline: Baseline, precision: Precision, folder: Path, export_seconds: float = 0.0
) -> BuiltVersion:
    """The quantized graph in `folder`, measured against fp32 and judged by the recipe's gate."""
    gate = recipe.gates[precision]
    generation = baseline.generation
    decoder = OnnxDecoder.open(folder, generation)
    measured = perplexity(decoder.logits, baseline.heldout_ids, context_length=generation.context_length)
    agreement = checks.teacher_forced_agreement(decoder.logits, baseline.prompts, baseline.fp32_replies)
    free_running = checks.GreedyComparison(
        baseline.fp32_replies, checks.greedy_replies(decoder.greedy, baseline.prompts)
    )
    fp32 = baseline.fp32.draft
    fp32_perplexity = fp32.metrics[PERPLEXITY]
    options = dict(recipe.export_options.get(precision, {}))
    draft = llm_draft(
        folder,
        generation,
        description=f"{recipe.description} Weights quantized {gate.scheme} (MatMulNBits).",
        metrics={PERPLEXITY: measured.value, GREEDY_AGREEMENT: agreement},
        params={**fp32.params, "precision": precision, "builder_options": options},
        lineage=fp32.lineage,
        quantization=gate.record(fp32_perplexity=fp32_perplexity, perplexity=measured.value),
        evaluation={
            "perplexity": _perplexity_facts(measured),
            "greedy_vs_fp32": {**_greedy_facts(free_running), "teacher_forced_agreement": agreement},
            "gate": {"max_increase": gate.max_increase, "min_agreement": gate.min_agreement},
        },
    )
    reason = gate.judge(fp32_perplexity=fp32_perplexity, perplexity=measured.value, agreement=agreement)
    return BuiltVersion(
        precision, folder, draft, export_seconds, QuantizationRefused(reason) if reason else None
    )


def ensure_llm_publishable(built: BuiltVersion) -> None:
    """Refuse a version whose checks or gate failed, and whatever the supervised pipeline also refuses
    (non-finite metrics, failed parity, a quantized metric beyond its allowance)."""
    if built.refusal is not None:
        raise built.refusal
    ensure_publishable(built.draft)


def publish_llm(
    run: LlmRun,
    built: BuiltVersion,
    registry: ModelRegistry,
    name: str | None = None,
    *,
    base_version: int | None = None,
) -> Manifest:
    """Publish one built precision with its card (a quantized one records `base_version`, the fp32
    version's number)."""
    ensure_llm_publishable(built)
    draft = built.draft
    if draft.quantization is not None and base_version is not None:
        draft = draft.model_copy(
            update={"quantization": draft.quantization.model_copy(update={"base_version": base_version})}
        )
    files: dict[str, bytes | Path] = {**published_files(built.folder), **run.card_files(built, draft)}
    return registry.publish(name or run.recipe.name, files, draft)


def _export(
    recipe: LlmRecipe, hf: Path, work_dir: Path, precision: Precision, exported: Mapping[str, Path]
) -> tuple[Path, float]:
    if precision in exported:
        return exported[precision], 0.0
    started = time.perf_counter()
    folder = build_onnx(
        hf, work_dir / f"onnx-{precision}", precision, options=recipe.export_options.get(precision)
    )
    return folder, time.perf_counter() - started


def _perplexity_facts(measured: Perplexity) -> dict[str, Any]:
    return {
        "value": measured.value,
        "scored_tokens": measured.scored_tokens,
        "windows": measured.windows,
        "window": measured.window,
        "stride": measured.stride,
    }


def _greedy_facts(comparison: checks.GreedyComparison) -> dict[str, Any]:
    return {
        "prompts": len(comparison.reference),
        "max_tokens": checks.GREEDY_TOKENS,
        "reference_tokens": comparison.reference_tokens,
        "identical": comparison.identical,
        "identical_prefix_tokens": comparison.identical_prefix_tokens,
    }
