"""The tiny decoder through export, manifest draft and publish: what a served LLM version holds."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from maas.registry import ModelRegistry
from maas.training.llm import PUBLISHED_FILES, OnnxDecoder, generation_of
from tests.support.llm import publish_tiny_llm, tiny_hf_folder, tiny_llm_folder


def test_the_onnx_folder_holds_exactly_the_files_a_version_publishes() -> None:
    folder = tiny_llm_folder()

    assert sorted(path.name for path in folder.iterdir()) == sorted(PUBLISHED_FILES)


def test_the_generation_contract_comes_from_the_models_own_config() -> None:
    hf = tiny_hf_folder()
    config = json.loads((hf / "config.json").read_text())

    generation = generation_of(hf)

    assert generation.context_length == config["max_position_embeddings"] == 256
    assert generation.num_layers == 2
    assert generation.num_kv_heads == 2
    assert generation.head_size == 64 // 4
    assert (generation.bos_token, generation.bos_token_id) == ("<|im_start|>", 1)
    assert (generation.eos_token, generation.eos_token_ids, generation.pad_token_id) == ("<|im_end|>", [2], 2)
    assert generation.chat_template_file == "chat_template.jinja"


def test_a_published_tiny_llm_lists_every_file_with_its_checksum(registry: ModelRegistry, s3: Any) -> None:
    manifest = publish_tiny_llm(registry)

    folder = tiny_llm_folder()
    assert manifest.task == "text-generation"
    assert manifest.model_data_files == ["model.onnx.data"]
    assert manifest.generation is not None
    assert manifest.generation.eos_token_ids == [2]
    assert sorted(a.path for a in manifest.artifacts) == sorted(PUBLISHED_FILES)
    for artifact in manifest.artifacts:
        data = (folder / artifact.path).read_bytes()
        assert artifact.sha256 == hashlib.sha256(data).hexdigest()
        assert artifact.bytes == len(data)
    inputs = [spec.name for spec in manifest.signature.inputs]
    outputs = [spec.name for spec in manifest.signature.outputs]
    assert inputs[:2] == ["input_ids", "attention_mask"]
    assert {"past_key_values.0.key", "past_key_values.1.value"} <= set(inputs)
    assert outputs[0] == "logits"
    assert {"present.0.key", "present.1.value"} <= set(outputs)
    assert registry.manifest(manifest.name, manifest.version) == manifest


def test_the_exported_decoder_continues_a_prompt_greedily() -> None:
    decoder = OnnxDecoder.open(tiny_llm_folder(), generation_of(tiny_hf_folder()))

    tokens = decoder.greedy([1, 40, 50, 60], 8, stop_at_eos=False)

    assert len(tokens) == 8
    assert decoder.logits([1, 40, 50, 60]).shape == (4, 384)
