"""The tiny decoder the generation tests run: a 2-layer Llama with random weights and a tiny byte-level BPE,
exported by onnxruntime-genai's builder (SmolLM2's layout, GroupQueryAttention), built once per machine by
tests.support.llm.

Fixtures only: what they stand on is in maas and tests/support."""

from __future__ import annotations

from pathlib import Path

import pytest

from maas.config import Settings
from maas.generation import TextGenerator, generator_session_config, open_generator
from maas.registry.manifest import Manifest, ManifestDraft, describe_artifact
from tests.support.llm import TINY_LLM_NAME, tiny_llm_draft, tiny_llm_folder


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    return tiny_llm_folder("fp32")


@pytest.fixture(scope="session")
def tiny_files(tiny_folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(tiny_folder.iterdir())}


@pytest.fixture(scope="session")
def tiny_draft() -> ManifestDraft:
    return tiny_llm_draft("fp32")


def _manifest(draft: ManifestDraft, files: dict[str, bytes]) -> Manifest:
    return draft.commit(TINY_LLM_NAME, 1, [describe_artifact(name, data) for name, data in files.items()])


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
