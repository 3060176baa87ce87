"""The tiny test decoder (SmolLM2's architecture, random weights), built once per machine and published
through the real registry API.

Building takes seconds of torch and a builder subprocess, so the folders (and the manifest draft) are
cached under the system's temp dir, keyed by a hash of everything that shapes them: the code that
writes and exports them (maas.training.llm's tiny.py and export.py) and the package versions that build
them. A change to either makes a new key, never a stale model. Each entry is written under a private
name and renamed into place, so xdist workers racing to build it each see either nothing or a complete
entry. Once cached, nothing here imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import maas
from maas.registry import Manifest, ManifestDraft, ModelRegistry

if TYPE_CHECKING:
    from maas.training.llm.gguf_import import ImportedWeights
    from maas.training.llm.recipes import LlmRecipe

# The real SmolLM2 build the tests publish (fp32, checked as `maas train` checks it), kept per machine as make
# serve keeps its own: the first test to need it builds it (minutes), every later one publishes it in seconds.
SMOLLM2_TEST_BUILDS = Path(tempfile.gettempdir()) / "maas-serve-llm-builds"
TINY_LLM_NAME = "tiny-llm"
TINY_PRECISIONS = ("fp32", "int8", "int4")
_KEY_PACKAGES = ("torch", "transformers", "tokenizers", "onnxruntime-genai", "onnxruntime")
_DRAFT_FILE = "draft.json"
# The modules that shape the cached entries: the weights and tokenizer, the export and the draft.
_KEY_SOURCES = ("tiny.py", "export.py")


def tiny_hf_folder() -> Path:
    """The tiny decoder as a Hugging Face folder: config.json, model.safetensors, generation_config.json,
    tokenizer.json, tokenizer_config.json and chat_template.jinja."""

    def write(folder: Path) -> None:
        from maas.training.llm.tiny import write_tiny_llm

        write_tiny_llm(folder)

    return _built("hf", write)


def tiny_llm_folder(precision: str = "fp32") -> Path:
    """The tiny decoder exported to ONNX at `precision` (fp32, int8 or int4): exactly the files a version
    of it publishes (model.onnx, model.onnx.data, tokenizer.json, chat_template.jinja,
    generation_config.json)."""
    _check_precision(precision)

    def write(folder: Path) -> None:
        from maas.training.llm.export import PRECISIONS, build_onnx

        build_onnx(tiny_hf_folder(), folder, next(p for p in PRECISIONS if p == precision))

    return _built(f"onnx-{precision}", write)


def tiny_llm_draft(precision: str = "fp32") -> ManifestDraft:
    """The manifest draft of the tiny decoder at `precision`: signature, generation contract and params."""
    _check_precision(precision)

    def write(folder: Path) -> None:
        from maas.training.llm.export import generation_of, llm_draft

        draft = llm_draft(
            tiny_llm_folder(precision),
            generation_of(tiny_hf_folder()),
            description=f"tiny random-weight test decoder ({precision})",
            params={"precision": precision},
        )
        folder.mkdir()
        (folder / _DRAFT_FILE).write_text(draft.model_dump_json(), encoding="utf-8")

    folder = _built(f"draft-{precision}", write)
    return ManifestDraft.model_validate_json((folder / _DRAFT_FILE).read_text(encoding="utf-8"))


def publish_tiny_llm(registry: ModelRegistry, name: str = TINY_LLM_NAME, precision: str = "fp32") -> Manifest:
    """Publish the tiny decoder at `precision` as a new version of `name`; its manifest."""
    draft = tiny_llm_draft(precision)
    folder = tiny_llm_folder(precision)
    files = {path.name: path for path in sorted(folder.iterdir())}
    return registry.publish(name, files, draft)


def tiny_llm_recipe() -> LlmRecipe:
    """An LLM recipe over the tiny decoder, with the real recipe's gates: what maas.training.llm.build
    runs in tests instead of importing SmolLM2."""
    from maas.training.llm.recipes import LlmRecipe

    return LlmRecipe(
        name=TINY_LLM_NAME,
        description="A tiny random-weight decoder of SmolLM2's architecture, for tests.",
        intended_use="Tests of the LLM path.",
        limitations="Random weights: its text means nothing.",
        weights=lambda folder: tiny_weights(),
    )


def tiny_weights() -> ImportedWeights:
    """The tiny decoder's Hugging Face folder as an LLM recipe's imported weights."""
    from maas.training.llm.gguf_import import ImportedWeights

    folder = tiny_hf_folder()
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    return ImportedWeights(folder=folder, source="tests.support.llm (random weights)", source_sha256=digest)


def _check_precision(precision: str) -> None:
    if precision not in TINY_PRECISIONS:
        raise ValueError(f"precision: expected one of {TINY_PRECISIONS}, got {precision!r}")


@functools.cache
def _cache_root() -> Path:
    digest = hashlib.sha256()
    # Read, not imported: importing maas.training pulls in torch, which a cached entry never needs.
    sources = Path(maas.__file__).resolve().parent / "training" / "llm"
    for name in _KEY_SOURCES:
        digest.update(name.encode() + b"\0" + (sources / name).read_bytes())
    for package in _KEY_PACKAGES:
        digest.update(f"{package}=={metadata.version(package)};".encode())
    return Path(tempfile.gettempdir()) / f"maas-tiny-llm-{digest.hexdigest()[:16]}"


def _built(kind: str, write: Callable[[Path], object]) -> Path:
    """The cached folder `kind`, written by `write(folder)` first if no process has yet."""
    final = _cache_root() / kind
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    private = final.parent / f".{kind}-{uuid.uuid4().hex}"
    try:
        write(private)
        try:
            private.rename(final)
        except OSError:
            # Another worker renamed its complete folder into place first; it holds the same content.
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return final
