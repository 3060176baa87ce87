"""The LLM `make serve` publishes: smollm2-135m, fp32, alias production, built by its recipe on a background
thread once the stack serves.

Importing, exporting and checking the model takes minutes, and the API should answer at once, so the stack
starts first and this thread publishes into its store. torch and transformers are imported on that thread
only. A failure is logged and the stack serves on without the LLM; a store that has a version of the model
already is left as it is. A build is kept on disk (llm_cache_folder()), so the next run, whose embedded store
starts empty again, publishes it in seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

import maas
from maas.errors import MaasError
from maas.local.sam import TemplateRoute
from maas.local.stack_banner import LlmState, llm_banner
from maas.registry import LATEST, Manifest, ManifestDraft, ModelRegistry
from maas.registry.admin import NO_ALIAS, RegistryAdmin

logger = logging.getLogger(__name__)

SERVED_LLM = "smollm2-135m"
SERVED_LLM_ALIAS = "production"
# "0", "false", "no" or "off" skips publishing the LLM, as `maas serve --no-llm` does.
ENV_SERVE_LLM = "MAAS_SERVE_LLM"
HOW_TO_SKIP = f"{ENV_SERVE_LLM}=0 or `maas serve --no-llm` skips it"
_OFF = ("0", "false", "no", "off")
# Where builds are kept between runs (default: maas/serve-llm in the user's cache folder).
ENV_SERVE_LLM_CACHE = "MAAS_SERVE_LLM_CACHE"
DRAFT_FILE = "draft.json"
# The packages whose versions shape a build, as the recipe's lineage lists them.
_BUILD_PACKAGES = ("torch", "transformers", "gguf", "onnxruntime", "onnxruntime-genai", "tokenizers", "numpy")
PUBLISHED_BY = "published by maas serve"
# Publishes the LLM into a registry; its manifest.
LlmPublisher = Callable[[ModelRegistry], Manifest]


def llm_wanted(environ: Mapping[str, str]) -> bool:
    """Whether MAAS_SERVE_LLM leaves the LLM on (unset or empty is on)."""
    return environ.get(ENV_SERVE_LLM, "").strip().lower() not in _OFF


def publish_llm_recipe(
    registry: ModelRegistry, name: str = SERVED_LLM, cache: Path | None = None
) -> Manifest:
    """Publish recipe `name`'s fp32 version, built as `maas train` builds it (import, export, parity and
    perplexity checks) or taken from `cache` (default: llm_cache_folder()) where an earlier build left it;
    its manifest.

    The embedded store lives in memory, so every `make serve` starts without the model: the cache makes
    only the first one spend minutes building it. fp32 only: each quantized precision takes minutes more to
    export and measure, and `maas train NAME` publishes them."""
    entry = llm_cache_entry(cache or llm_cache_folder(), name)
    entry.parent.mkdir(parents=True, exist_ok=True)
    # One build per machine: a second process (another `make serve`, a test worker) waits for the first and
    # publishes its cached build instead of spending the same minutes again.
    with (entry.parent / f".{entry.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (entry / DRAFT_FILE).is_file():
            logger.info("%s: publishing the build cached in %s", name, entry)
            draft = ManifestDraft.model_validate_json((entry / DRAFT_FILE).read_bytes())
            # Paths: the registry streams them, so publishing holds none of the weights (540 MB) in memory.
            files = {path.name: path for path in sorted(entry.iterdir()) if path.name != DRAFT_FILE}
            return registry.publish(name, files, draft)
        return _build_and_publish(registry, name, entry)


def _build_and_publish(registry: ModelRegistry, name: str, entry: Path) -> Manifest:
    from maas.training.llm.build import build_llm, publish_llm
    from maas.training.llm.export import PUBLISHED_FILES
    from maas.training.llm.recipes import LLM_RECIPES

    with tempfile.TemporaryDirectory(prefix="maas-serve-llm-") as work:
        run = build_llm(LLM_RECIPES[name], Path(work), precisions=())
        # publish_llm refuses a version that failed a check, so only a checked build reaches the cache.
        manifest: Manifest = publish_llm(run, run.fp32, registry, name)
        built = [run.fp32.folder / file_name for file_name in PUBLISHED_FILES]
        _keep(entry, built, run.card_files(run.fp32), run.fp32.draft)
    return manifest


def llm_cache_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where `make serve` keeps its LLM builds: $MAAS_SERVE_LLM_CACHE, else maas/serve-llm under the
    user's cache folder ($XDG_CACHE_HOME, else ~/.cache)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_SERVE_LLM_CACHE):
        return Path(environ[ENV_SERVE_LLM_CACHE])
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maas" / "serve-llm"


def llm_cache_entry(cache: Path, name: str) -> Path:
    """The folder in `cache` that holds recipe `name`'s build by this code and these packages, once built:
    the version's files and its manifest draft (draft.json)."""
    return cache / f"{name}-{_build_key()}"


def _build_key() -> str:
    """What a build depends on: the recipe's code (read, not imported: that would import torch) and the
    versions of the packages that build it. Another key is another build, never a stale one."""
    digest = hashlib.sha256()
    code = Path(maas.__file__).resolve().parent / "training" / "llm"
    for source in sorted(code.glob("*")):
        if source.is_file():
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for package in _BUILD_PACKAGES:
        digest.update(f"{package}=={metadata.version(package)};".encode())
    return digest.hexdigest()[:16]


def _keep(entry: Path, built: Sequence[Path], card: Mapping[str, bytes], draft: ManifestDraft) -> None:
    """Copy a published build into the cache, under a private name renamed into place once complete, so a
    reader sees all of it or nothing. A cache that cannot be written costs the next run time, nothing else."""
    private = entry.parent / f".{entry.name}-{uuid.uuid4().hex}"
    try:
        private.mkdir(parents=True)
        for path in built:
            shutil.copyfile(path, private / path.name)  # copied, not read: the fp32 weights are 540 MB
        for file_name, data in card.items():
            (private / file_name).write_bytes(data)
        (private / DRAFT_FILE).write_text(draft.model_dump_json(), encoding="utf-8")
        private.rename(entry)
    except OSError as failure:
        logger.warning("%s: not cached (%s); the next run builds it again", entry.name, failure)
    finally:
        shutil.rmtree(private, ignore_errors=True)


class LlmSeeding:
    """Publishes the LLM into a running stack's registry on a background thread unless the store has it,
    points the alias at what it published (unless the alias exists), and says where that stands (`state`,
    `banner()`); a failure is logged, never raised.

    `publish` publishes a version of `name` (the recipe's build by default; tests hand in a tiny model)."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        url: str,
        routes: Sequence[TemplateRoute],
        publish: LlmPublisher = publish_llm_recipe,
        name: str = SERVED_LLM,
        alias: str = SERVED_LLM_ALIAS,
    ) -> None:
        self.registry = registry
        self.url = url
        self.routes = routes
        self.publish = publish
        self.name = name
        self.alias = alias
        self.reference = f"{name}@{alias}"
        self.state: LlmState = "publishing"
        self.detail = HOW_TO_SKIP
        self.published: Manifest | None = None
        self._done = threading.Event()
        self._stopping = False

    def start(self) -> LlmSeeding:
        """Look in the store now (a model found there is ready at once), else publish in the background."""
        versions = self.registry.versions(self.name)
        if versions:
            if self.registry.alias_document(self.name, self.alias) is None:
                self.reference = f"{self.name}@{LATEST}"
            listed = ", ".join(map(str, versions))
            self._finish("ready", f"found in the store: {self.name} versions {listed}")
            return self
        # A daemon: Ctrl-C must not wait minutes for an import whose store is stopping anyway.
        threading.Thread(target=self._run, name="llm-seeding", daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the seeding has ended (ready or failed), waiting up to `timeout` seconds."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """The stack is stopping: a failure from now on is the shutdown's doing, not the model's."""
        self._stopping = True

    def banner(self) -> str:
        return llm_banner(
            url=self.url, routes=self.routes, reference=self.reference, state=self.state, detail=self.detail
        )

    def _run(self) -> None:
        started = time.monotonic()
        try:
            manifest = self.publish(self.registry)
            if self.registry.alias_document(self.name, self.alias) is None:
                RegistryAdmin(self.registry).set_alias(
                    self.name, self.alias, manifest.version, expected_version=NO_ALIAS, reason=PUBLISHED_BY
                )
        except Exception as failure:  # whatever it is, the stack serves on without the LLM
            if self._stopping:
                logger.info("%s: publishing ended with the stack", self.name)
                self._finish("failed", "the stack stopped first")
                return
            expected = isinstance(failure, MaasError)
            reason = str(failure) if expected else f"{type(failure).__name__}: {failure}"
            # A refusal (a failed check, missing weights) says all in its message; anything else needs its
            # traceback.
            logger.error("%s: publishing failed: %s", self.name, reason, exc_info=not expected)
            self._finish("failed", reason, announce=True)
        else:
            seconds = time.monotonic() - started
            logger.info("%s: published version %d in %.0f s", self.name, manifest.version, seconds)
            self.published = manifest
            self._finish("ready", f"version {manifest.version}, published in {seconds:.0f} s", announce=True)

    def _finish(self, state: LlmState, detail: str, *, announce: bool = False) -> None:
        """Record the outcome; `announce` prints it (from the background, where no banner follows)."""
        self.state, self.detail = state, detail
        if announce:
            print(self.banner(), flush=True)
        self._done.set()
