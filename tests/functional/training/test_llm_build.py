"""The LLM recipe's run on the tiny decoder: checks against transformers, perplexity, the quantization gate
and publishing, as `maas train smollm2-135m` does them for SmolLM2."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maas.registry import ModelRegistry
from maas.training import ParityCheckFailed, QuantizationRefused
from maas.training.llm.build import LlmRun, build_llm, measure_quantized, publish_llm
from maas.training.llm.export import MODEL_DATA_FILE, PUBLISHED_FILES
from maas.training.llm.perplexity import windows
from maas.training.llm.quantize import QuantizationGate
from tests.support.llm import tiny_llm_folder, tiny_llm_recipe, tiny_weights


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmRun]:
    exported = {precision: tiny_llm_folder(precision) for precision in ("fp32", "int8", "int4")}
    yield build_llm(
        tiny_llm_recipe(),
        tmp_path_factory.mktemp("llm-run"),
        ("int8", "int4"),
        weights=tiny_weights(),
        exported=exported,
    )


def test_fp32_matches_transformers_on_held_out_logits_and_greedy_tokens(tiny_run: LlmRun) -> None:
    draft = tiny_run.fp32.draft

    assert draft.parity is not None
    assert draft.parity.passed
    assert draft.parity.max_abs_diff <= draft.parity.tolerance == 1e-3
    greedy = draft.evaluation["greedy_vs_transformers"]
    assert greedy["identical"]
    assert (greedy["prompts"], greedy["reference_tokens"]) == (5, 5 * 32)
    assert tiny_run.fp32.refusal is None


def test_perplexity_is_the_primary_metric_measured_through_onnxruntime(tiny_run: LlmRun) -> None:
    draft = tiny_run.fp32.draft
    facts = draft.evaluation["perplexity"]

    assert (draft.primary_metric, draft.primary_metric_goal) == ("perplexity", "minimize")
    assert 1 < draft.metrics["perplexity"] < math.inf
    assert draft.metrics["perplexity"] == pytest.approx(draft.metrics["perplexity_torch"], rel=1e-5)
    # The tiny model's context (256) bounds the window; every held-out token but the first is scored once.
    assert (facts["window"], facts["stride"]) == (256, 128)
    assert facts["scored_tokens"] == len(tiny_run.baseline.heldout_ids) - 1
    assert facts["windows"] == len(windows(len(tiny_run.baseline.heldout_ids), 256, 128))


def test_each_quantized_precision_records_its_gate_against_fp32(tiny_run: LlmRun) -> None:
    fp32_perplexity = tiny_run.fp32.draft.metrics["perplexity"]

    for built, scheme in zip(tiny_run.quantized, ("int8-weight-only", "int4-weight-only"), strict=True):
        quantization = built.draft.quantization
        assert quantization is not None
        assert quantization.scheme == scheme
        assert quantization.metric == "perplexity"
        assert quantization.fp32_value == fp32_perplexity
        assert quantization.quantized_value == built.draft.metrics["perplexity"]
        assert 0 <= built.draft.metrics["greedy_agreement"] <= 1
        assert built.draft.parity is None
        assert built.draft.generation == tiny_run.fp32.draft.generation


def test_a_published_run_lists_every_file_with_its_checksum_and_a_card(
    tiny_run: LlmRun, registry: ModelRegistry
) -> None:
    fp32 = publish_llm(tiny_run, tiny_run.fp32, registry, "tiny-run")

    assert fp32.task == "text-generation"
    assert sorted(a.path for a in fp32.artifacts) == sorted([*PUBLISHED_FILES, "card.md"])
    for name in PUBLISHED_FILES:
        data = (tiny_run.fp32.folder / name).read_bytes()
        assert fp32.artifact(name).sha256 == hashlib.sha256(data).hexdigest()
    assert fp32.parity == tiny_run.fp32.draft.parity
    assert fp32.lineage.recipe == "tiny-llm"
    assert fp32.lineage.dataset_hash is not None
    card = registry.read_artifact(fp32, fp32.artifact("card.md")).decode()
    assert "perplexity" in card


def test_a_quantized_version_names_the_fp32_version_it_came_from(
    tiny_run: LlmRun, registry: ModelRegistry
) -> None:
    # A gate that passes anything: what is under test is the link to fp32, not the tiny model's quality.
    lenient = dataclasses.replace(
        tiny_run.recipe, gates={"int4": QuantizationGate("int4", max_increase=1.0, min_agreement=0.0)}
    )
    passing = measure_quantized(lenient, tiny_run.baseline, "int4", tiny_llm_folder("int4"))
    fp32 = publish_llm(tiny_run, tiny_run.fp32, registry, "tiny-run")

    quantized = publish_llm(tiny_run, passing, registry, "tiny-run", base_version=fp32.version)

    assert quantized.version == fp32.version + 1
    assert quantized.quantization is not None
    assert quantized.quantization.base_version == fp32.version


def test_the_gate_refuses_a_broken_quantization_with_its_numbers(
    tiny_run: LlmRun, registry: ModelRegistry, s3: Any, tmp_path: Path
) -> None:
    # Given int8 weights and scales all zeroed: a graph that loads and runs, and predicts nothing.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llm_folder("int8"), broken)
    data = broken / MODEL_DATA_FILE
    data.write_bytes(bytes(data.stat().st_size))

    built = measure_quantized(tiny_run.recipe, tiny_run.baseline, "int8", broken)

    assert isinstance(built.refusal, QuantizationRefused)
    agreement = built.draft.metrics["greedy_agreement"]
    assert agreement < 0.9
    assert "greedy agreement with fp32 of at least 90%" in built.refusal.message
    assert f"got {agreement:.1%}" in built.refusal.message
    with pytest.raises(QuantizationRefused):
        publish_llm(tiny_run, built, registry, "tiny-run", base_version=1)
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0


def test_an_export_that_differs_from_transformers_is_refused(
    tiny_run: LlmRun, registry: ModelRegistry, s3: Any, tmp_path: Path
) -> None:
    # Given the int4 graph passed off as the fp32 export of the same weights.
    run = build_llm(
        tiny_run.recipe, tmp_path, (), weights=tiny_weights(), exported={"fp32": tiny_llm_folder("int4")}
    )

    parity = run.fp32.draft.parity
    assert parity is not None
    assert not parity.passed
    with pytest.raises(ParityCheckFailed) as raised:
        publish_llm(run, run.fp32, registry, "tiny-run")
    assert "greedy" in raised.value.message or f"{parity.max_abs_diff:g}" in raised.value.message
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0
