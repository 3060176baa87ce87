"""Text generators loaded from the registry and kept warm.

A load goes the way maas.runtime loads any model: the temp-space and memory budgets checked before any
download (maas.runtime.budgets, evicting cached generators when that makes room), every artifact's size and
sha256 checked against the manifest as it streams, the graph vetted, the session opened from a private folder
holding only verified files (model.onnx with model.onnx.data beside it), the folder gone once the session is
open. The tokenizer and the chat template are artifacts of the version too, verified the same way, and read
from memory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from maas.config import Settings
from maas.errors import IntegrityError, InvalidInput
from maas.generation.decoder import DecoderSession
from maas.generation.text_generator import TextGenerator
from maas.registry.manifest import Generation, Manifest
from maas.registry.store import ModelRegistry
from maas.runtime import (
    LoadBudget,
    ModelCache,
    SessionConfig,
    check_signature,
    open_verified_session,
    report_model_load,
    session_config,
    settle_footprint,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from maas.generation.chat_template import ChatTemplate

# Spinning intra-op threads wait for work by burning CPU: between the small kernels of one decode step that
# halved decode speed on 2 vCPUs (decision 0019).
SPINNING_OFF = ("session.intra_op.allow_spinning", "0")


class GeneratorLoader:
    """Loads (name, version) once and serves it from memory while it fits the cache's byte budget."""

    def __init__(
        self, registry: ModelRegistry, settings: Settings, *, budget: LoadBudget | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        self._config: SessionConfig | None = None
        self.cache: ModelCache[TextGenerator] = ModelCache(self._load, settings.cache_bytes)
        self.budget = budget or LoadBudget(settings)

    @property
    def config(self) -> SessionConfig:
        """Resolved on the first load, as the inference service does: MAAS_PROVIDER=cuda on a host without
        CUDA fails that load with 503, not the function's import."""
        if self._config is None:
            self._config = generator_session_config(self.settings)
        return self._config

    def get(self, name: str, version: int) -> TextGenerator:
        return self.cache.get(name, version)

    def _load(self, name: str, version: int) -> TextGenerator:
        started = time.perf_counter()
        manifest = self.registry.manifest(name, version)
        generation_of(manifest)  # a version that generates no text is a 400 before any budget or download
        with self.budget.admitted(manifest, self.config, self.cache, _session_of) as config:
            generator = load_generator(self.registry, manifest, config)
        report_model_load(
            generator.manifest,
            generator.decoder.session,
            started,
            kv_shared_buffer=generator.generation.kv_shared_buffer,
        )
        return generator


def generator_session_config(settings: Settings) -> SessionConfig:
    """The settings' providers and threads (one per usable vCPU unless set), with spinning off."""
    return session_config(settings, config_entries=(SPINNING_OFF,))


def load_generator(registry: ModelRegistry, manifest: Manifest, config: SessionConfig) -> TextGenerator:
    """The version as a text generator: artifacts verified, session open, warmed up if configured.

    No budgets here: `GeneratorLoader` checks them, against its cache, before calling this."""
    generation = generation_of(manifest)
    # The small artifacts first: a bad tokenizer or template fails the load before a large session opens.
    tokenizer = _tokenizer(
        manifest, registry.read_artifact(manifest, manifest.artifact(generation.tokenizer_file))
    )
    template = None
    if generation.chat_template_file is not None:
        source = registry.read_artifact(manifest, manifest.artifact(generation.chat_template_file))
        template = _chat_template(manifest, generation, source)
    session = open_verified_session(registry, manifest, config)
    generator = _assembled(manifest, session, tokenizer, template, config)
    settle_footprint(session)
    return generator


def open_generator(folder: Path, manifest: Manifest, config: SessionConfig) -> TextGenerator:
    """A text generator over a folder already on disk (an export, a benchmark's copy), laid out as the
    manifest's artifacts; nothing is verified, so only for files this process made or checked itself."""
    generation = generation_of(manifest)
    tokenizer = _tokenizer(manifest, (folder / generation.tokenizer_file).read_bytes())
    template = None
    if generation.chat_template_file is not None:
        template = _chat_template(manifest, generation, (folder / generation.chat_template_file).read_bytes())
    session = ort.InferenceSession(
        str(folder / manifest.model_file),
        sess_options=config.session_options(),
        providers=list(config.providers),
    )
    return _assembled(manifest, session, tokenizer, template, config)


def generation_of(manifest: Manifest) -> Generation:
    """The manifest's decoding contract; InvalidInput naming `model` for a version that generates no text."""
    if manifest.generation is None:
        raise InvalidInput(
            f"model: expected a text generator, got '{manifest.name}' v{manifest.version}, "
            f"a model of task {manifest.task or 'unset'} that generates no text"
        )
    return manifest.generation


def _assembled(
    manifest: Manifest,
    session: ort.InferenceSession,
    tokenizer: Tokenizer,
    template: ChatTemplate | None,
    config: SessionConfig,
) -> TextGenerator:
    check_signature(manifest, session)
    decoder = DecoderSession(session, generation_of(manifest), what=_what(manifest, manifest.model_file))
    generator = TextGenerator(manifest, decoder, tokenizer, template)
    if config.warmup:
        generator.warm_up()
    return generator


def _session_of(generator: TextGenerator) -> ort.InferenceSession:
    return generator.decoder.session


def _tokenizer(manifest: Manifest, data: bytes) -> Tokenizer:
    # Imported on the first load, not with the function: importing the generate app must stay cheap.
    from tokenizers import Tokenizer

    generation = generation_of(manifest)
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # tokenizers raises plain Exception on a file it cannot read
        raise IntegrityError(
            f"{_what(manifest, generation.tokenizer_file)}: expected a tokenizers JSON file, got one it "
            "cannot read",
            detail=f"{type(exc).__name__}: {exc}",
        ) from None


def _chat_template(manifest: Manifest, generation: Generation, data: bytes) -> ChatTemplate:
    # jinja2 is imported on the first load of a model with a template, not with the function.
    from maas.generation.chat_template import ChatTemplate

    assert generation.chat_template_file is not None
    what = _what(manifest, generation.chat_template_file)
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"{what}: expected UTF-8 text, got bytes that are not") from None
    return ChatTemplate(source, bos_token=generation.bos_token, eos_token=generation.eos_token, what=what)


def _what(manifest: Manifest, path: str) -> str:
    return f"{path} of model '{manifest.name}' v{manifest.version}"
