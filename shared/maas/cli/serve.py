"""`maas serve` (what `make serve` runs): the local stack, seeded with the example models, until Ctrl-C.

The seeding lives here rather than in `maas.local` because it trains models: the CLI is the one layer
that may compose the local emulator with the training code, so neither of those imports the other. The
example models are published before the stack serves; the LLM after, in the background (maas.cli.serve_llm).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from maas.cli.serve_llm import ENV_SERVE_LLM, SERVED_LLM, LlmSeeding, llm_wanted
from maas.cli.target import read_saved_stack
from maas.errors import ConfigurationError
from maas.local.data_folder import data_folder
from maas.local.stack import (
    DEFAULT_PORT,
    ENV_LOCAL_PARAMETERS,
    SEED_MODELS,
    LocalStack,
    Seeder,
    find_project_root,
    parse_parameter_overrides,
    read_timeout_from_environment,
)
from maas.local.stack_banner import llm_banner
from maas.registry import Manifest, ModelRegistry
from maas.registry.admin import NO_ALIAS, RegistryAdmin
from maas.registry.store import VersionConflict

logger = logging.getLogger(__name__)

# The aliases README.md and docs/ use, set by `make serve` when missing (never moved once set).
DOCUMENTED_ALIASES = {"seed-mlp": "production"}
ALIAS_REASON = "set by maas serve where missing: the docs' examples use it"


def seed_registry(
    registry: ModelRegistry, models: Sequence[str] = SEED_MODELS, overrides: Mapping[str, Any] | None = None
) -> list[Manifest]:
    """Train and publish each recipe that has no version yet, then set the aliases the docs use where they
    are missing; returns what was published. What is there already is left as it is."""
    missing = [name for name in models if not registry.versions(name)]
    published = []
    if missing:
        from maas.training import train_and_publish  # torch stays out of the CLI's import time

        for name in missing:
            logger.info("publishing %s: no version in s3://%s yet (first run only)", name, registry.bucket)
            published.append(train_and_publish(name, registry, overrides=overrides))
    set_documented_aliases(registry, [name for name in models if name in DOCUMENTED_ALIASES])
    return published


def set_documented_aliases(registry: ModelRegistry, models: Sequence[str]) -> list[str]:
    """Point each documented alias that is not set (seed-mlp@production) at its model's latest version, by
    the registry's own API (so it has a history entry); returns the `model@alias` references it set."""
    admin = RegistryAdmin(registry)
    set_now = []
    for name in models:
        alias = DOCUMENTED_ALIASES[name]
        versions = registry.versions(name)
        if not versions or alias in registry.aliases(name):
            continue
        try:
            admin.set_alias(
                name, alias, versions[-1], expected_version=NO_ALIAS, reason=ALIAS_REASON, by="maas serve"
            )
        except VersionConflict:  # someone set it meanwhile: theirs stands
            continue
        logger.info("%s@%s -> version %d (the docs use it)", name, alias, versions[-1])
        set_now.append(f"{name}@{alias}")
    return set_now


def example_seeder(models: Sequence[str] = SEED_MODELS, overrides: Mapping[str, Any] | None = None) -> Seeder:
    """A LocalStack seeder that trains and publishes each of `models` that has no version yet."""
    chosen, config = tuple(models), dict(overrides) if overrides else None

    def seed(registry: ModelRegistry) -> list[Manifest]:
        return seed_registry(registry, chosen, config)

    return seed


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    parameters: Mapping[str, str] | None = None,
    *,
    llm: bool | None = None,
    data_dir: Path | None = None,
    store_port: int | None = None,
) -> None:
    """Run the local stack until Ctrl-C. Template parameter overrides come from `parameters`, else from
    MAAS_LOCAL_PARAMETERS; whether to publish the LLM from `llm`, else from MAAS_SERVE_LLM. The store is
    kept in `data_dir` (else MAAS_DATA_DIR, else `.maas/` in the checkout) on `store_port` (else the one
    remembered there, else `port` + 1)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("maas.local").setLevel(logging.INFO)
    logging.getLogger(__name__).setLevel(logging.INFO)
    logging.getLogger(LlmSeeding.__module__).setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if parameters is None:
            parameters = parse_parameter_overrides(os.environ.get(ENV_LOCAL_PARAMETERS, ""))
        read_timeout = read_timeout_from_environment(os.environ)
        with LocalStack(
            host=host,
            port=port,
            parameters=parameters,
            read_timeout_seconds=read_timeout,
            seeder=example_seeder(),
            data_dir=data_dir or data_folder(os.environ, find_project_root()),
            store_port=store_port,
        ) as stack:
            print(stack.banner(), flush=True)
            notice = saved_stack_notice(os.environ)
            if notice is not None:
                print(notice, flush=True)
            wanted = llm if llm is not None else llm_wanted(os.environ)
            if wanted:
                seeding = LlmSeeding(stack.registry, url=stack.url, routes=stack.template.routes).start()
                print(seeding.banner(), flush=True)
            else:
                seeding = None
                off = f"{ENV_SERVE_LLM}=0 or --no-llm"
                print(llm_banner(url=stack.url, routes=[], reference=SERVED_LLM, state="off", detail=off))
            try:
                _wait_for_a_signal()
            finally:
                if seeding is not None:
                    seeding.stop()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)


def _wait_for_a_signal() -> None:
    """Block until Ctrl-C or SIGTERM raises KeyboardInterrupt here. The kernel may hand a signal to any
    thread; Python then only runs its handler when the main thread next runs bytecode, which a wait with
    no timeout never does: a `make serve` hit by SIGTERM under load kept serving (seen in a test). Short
    waits let the main thread run the handler within a second."""
    forever = threading.Event()
    while not forever.wait(timeout=0.5):
        pass


def saved_stack_notice(environ: Mapping[str, str]) -> str | None:
    """One line when `maas use-stack NAME` remembered a deployed stack: `maas` commands go there, not to
    the stack the banner announces (maas.cli.target's precedence), until `maas use-stack --local`."""
    try:
        saved = read_saved_stack(environ)
    except ConfigurationError as exc:
        return f"note: `maas` commands will fail until the remembered deployed stack is fixed: {exc.message}"
    if saved is None:
        return None
    return (
        f"note: `maas` commands go to the deployed stack {saved.stack} ({saved.region}, bucket "
        f"{saved.bucket}), remembered by `maas use-stack`, not to this one; `maas use-stack --local` makes "
        "them use this one"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (docker stop, systemd) shuts down as cleanly as Ctrl-C."""
    raise KeyboardInterrupt
