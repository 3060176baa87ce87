"""The tiny decoder the generation tests run: a 2-layer Llama with random weights and a 333-token byte-level
BPE, exported by onnxruntime-genai's builder (SmolLM2's layout, GroupQueryAttention).

Until tests/support/llm.py builds it, the build made by the lead's probe at /tmp/llm/tiny-fp32 is copied
here; the tests skip where it is absent.

Fixtures only: what they stand on is in maas and tests/support."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest

from maas.config import Settings
from maas.generation import TextGenerator, generator_session_config, open_generator
from maas.registry.manifest import Generation, Manifest, ManifestDraft, describe_artifact
from maas.runtime import signature_of

PROBE_BUILD = Path("/tmp/llm/tiny-fp32")
ARTIFACTS = ("model.onnx", "model.onnx.data", "tokenizer.json", "chat_template.jinja")


def _generation(folder: Path, *, shared_buffer: bool) -> Generation:
    config = json.loads((folder / "genai_config.json").read_text())["model"]
    decoder = config["decoder"]
    return Generation(
        context_length=config["context_length"],
        num_layers=decoder["num_hidden_layers"],
        num_kv_heads=decoder["num_key_value_heads"],
        head_size=decoder["head_size"],
        kv_shared_buffer=shared_buffer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        bos_token_id=config["bos_token_id"],
        eos_token_ids=[config["eos_token_id"]],
        pad_token_id=config["pad_token_id"],
    )


def _draft(folder: Path, *, shared_buffer: bool) -> ManifestDraft:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return ManifestDraft(
        task="text-generation",
        model_data_files=["model.onnx.data"],
        signature=signature_of(session),
        generation=_generation(folder, shared_buffer=shared_buffer),
    )


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (PROBE_BUILD / "model.onnx").exists():
        pytest.skip(f"the tiny decoder build is not at {PROBE_BUILD}")
    folder = tmp_path_factory.mktemp("tiny-llm")
    for name in (*ARTIFACTS, "genai_config.json"):
        shutil.copyfile(PROBE_BUILD / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_files(tiny_folder: Path) -> dict[str, bytes]:
    return {name: (tiny_folder / name).read_bytes() for name in ARTIFACTS}


@pytest.fixture(scope="session")
def tiny_draft(tiny_folder: Path) -> ManifestDraft:
    return _draft(tiny_folder, shared_buffer=True)


def _manifest(draft: ManifestDraft, files: dict[str, bytes]) -> Manifest:
    return draft.commit("tiny-llm", 1, [describe_artifact(name, data) for name, data in files.items()])


@pytest.fixture(scope="session")
def tiny_generator(
    tiny_folder: Path, tiny_files: dict[str, bytes], tiny_draft: ManifestDraft
) -> TextGenerator:
    """Shared-buffer mode, the manifest's default."""
    config = generator_session_config(Settings(provider="cpu"))
    return open_generator(tiny_folder, _manifest(tiny_draft, tiny_files), config)


@pytest.fixture(scope="session")
def tiny_copying_generator(
    tiny_folder: Path, tiny_files: dict[str, bytes], tiny_draft: ManifestDraft
) -> TextGenerator:
    """The same model with the cache fed back step by step (kv_shared_buffer off)."""
    assert tiny_draft.generation is not None
    generation = tiny_draft.generation.model_copy(update={"kv_shared_buffer": False})
    draft = tiny_draft.model_copy(update={"generation": generation})
    config = generator_session_config(Settings(provider="cpu"))
    return open_generator(tiny_folder, _manifest(draft, tiny_files), config)
