"""The LLM `make serve` publishes: smollm2-135m, fp32, alias production, built by its recipe on a background
thread once the stack serves.

Importing, exporting and checking the model takes minutes, and the API should answer at once, so the stack
starts first and this thread publishes into its store. torch and transformers are imported on that thread
only. A failure is logged and the stack serves on without the LLM; a store that has a version of the model
already is left as it is.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from maas.errors import MaasError
from maas.local.sam import TemplateRoute
from maas.local.stack_banner import LlmState, llm_banner
from maas.registry import LATEST, Manifest, ModelRegistry
from maas.registry.admin import NO_ALIAS, RegistryAdmin

logger = logging.getLogger(__name__)

SERVED_LLM = "smollm2-135m"
SERVED_LLM_ALIAS = "production"
# "0", "false", "no" or "off" skips publishing the LLM, as `maas serve --no-llm` does.
ENV_SERVE_LLM = "MAAS_SERVE_LLM"
HOW_TO_SKIP = f"{ENV_SERVE_LLM}=0 or `maas serve --no-llm` skips it"
_OFF = ("0", "false", "no", "off")
PUBLISHED_BY = "published by maas serve"
# Publishes the LLM into a registry; its manifest.
LlmPublisher = Callable[[ModelRegistry], Manifest]


def llm_wanted(environ: Mapping[str, str]) -> bool:
    """Whether MAAS_SERVE_LLM leaves the LLM on (unset or empty is on)."""
    return environ.get(ENV_SERVE_LLM, "").strip().lower() not in _OFF


def publish_llm_recipe(registry: ModelRegistry, name: str = SERVED_LLM) -> Manifest:
    """Build LLM recipe `name` as `maas train` does (import, export, parity and perplexity checks) and
    publish its fp32 version; its manifest.

    fp32 only: each quantized precision takes minutes more to export and measure, and `maas train NAME`
    publishes them."""
    from maas.training.llm.build import build_llm, publish_llm
    from maas.training.llm.recipes import LLM_RECIPES

    with tempfile.TemporaryDirectory(prefix="maas-serve-llm-") as work:
        run = build_llm(LLM_RECIPES[name], Path(work), precisions=())
        manifest: Manifest = publish_llm(run, run.fp32, registry, name)
    return manifest


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
