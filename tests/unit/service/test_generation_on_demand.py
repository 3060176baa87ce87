"""The batch and async functions answer V2 requests too: the generation stack is imported, and the completion
service built, only when the first chat or prompt arrives, so their cold start stays what it was."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from maas.config import Settings
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import ModelRef, ModelRegistry
from maas.runtime import LoadBudget, MachineReadings
from maas.runtime.budgets import MEMORY_MARGIN_SHARE
from maas.runtime.cache import ModelCache
from maas.service.generation_on_demand import EventCompletionsOnDemand, asks_for_text
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET
from tests.support.external_data import CHAIN_WIDTH, MiB, matmul_chain_model
from tests.support.llm import TINY_LLM_NAME, publish_tiny_llm
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


def test_the_generators_and_the_models_cache_evict_each_other_to_make_room(registry: ModelRegistry) -> None:
    """The async and batch functions hold models and text generators in two caches of one process: a
    generator that fits only once a cached model is evicted gets that room rather than a 503."""
    chain_files, chain_draft = matmul_chain_model()
    chain = registry.publish("chain", chain_files, chain_draft)
    llm = publish_tiny_llm(registry)
    function = 200 * MiB
    settings = Settings(bucket=TEST_BUCKET, provider="cpu", function_memory_bytes=function)
    caches: list[ModelCache[Any]] = []
    base: list[int] = [0]

    def resident() -> int:
        held: int = sum(model.size_bytes for cache in caches for _, model in cache.entries())
        return base[0] + held

    models = InferenceService(registry, settings, budget=LoadBudget(settings, MachineReadings(resident)))
    caches.append(models.cache)
    rows = np.ones((1, CHAIN_WIDTH), dtype=np.float32)
    models.infer(ModelRef("chain", version=chain.version), InferenceRequest([Tensor("x", "FP32", rows)]))
    # Nothing left beside the cached chain and the margin: the generator fits only in the chain's place.
    [(_, cached)] = models.cache.entries()
    base[0] = function - math.ceil(function * MEMORY_MARGIN_SHARE) - cached.size_bytes
    loader = EventCompletionsOnDemand(registry, settings, models=models)().service.loader
    caches.append(loader.cache)

    loader.get(TINY_LLM_NAME, llm.version)

    assert models.cache.loaded_keys() == []
    assert loader.cache.loaded_keys() == [(TINY_LLM_NAME, llm.version)]
