"""The batch and async functions answer V2 requests too: the generation stack is imported, and the completion
service built, only when the first chat or prompt arrives, so their cold start stays what it was."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maas.config import Settings
from maas.registry import ModelRegistry
from maas.service.generation_on_demand import EventCompletionsOnDemand, asks_for_text
from tests.support.aws import TEST_BUCKET
from tests.support.paths import ROOT

# What a text generator needs and a V2 request never does.
GENERATION_STACK = (
    "maas.generation",
    "maas.service.completions",
    "maas.service.event_completions",
    "maas.protocol.openai_types",
    "jinja2",
    "tokenizers",
)
PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("root", ["maas.apps.batch", "maas.apps.async_"])
def test_building_the_event_functions_imports_no_generation_stack(root: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, root],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "shared"), "AWS_DEFAULT_REGION": "us-east-1"},
        cwd=ROOT,
    )
    modules = json.loads(completed.stdout.strip().splitlines()[-1])

    assert root in modules
    assert [m for m in modules if any(m == f or m.startswith(f + ".") for f in GENERATION_STACK)] == []


def test_the_completion_service_is_built_once_over_the_registry_and_settings_given(
    registry: ModelRegistry,
) -> None:
    settings = Settings(bucket=TEST_BUCKET, provider="cpu")
    on_demand = EventCompletionsOnDemand(registry, settings)

    first, second = on_demand(), on_demand()

    assert first is second
    assert first.service.registry is registry and first.service.settings is settings


@pytest.mark.parametrize(
    ("body", "asks"),
    [
        ({"model": "m", "messages": []}, True),
        ({"model": "m", "prompt": "Hi"}, True),
        ({"model": "m", "messages": [], "prompt": "Hi"}, True),
        ({"model": "m", "inputs": []}, False),
        ({}, False),
    ],
)
def test_a_body_asks_for_text_when_it_has_messages_or_a_prompt(body: dict[str, object], asks: bool) -> None:
    assert asks_for_text(body) is asks
