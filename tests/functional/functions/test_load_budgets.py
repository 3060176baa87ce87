"""Loads that do not fit are refused before any download, through the real infer and generate handlers.

Given a model of a few MB with external data (or the tiny test decoder) published to moto, and the function
started with the sizes Lambda and the template would give it, a request answers:

- 507 when its graph files do not fit the function's temp space (MAAS_EPHEMERAL_STORAGE_MB), naming
  needed and available MB and the EphemeralStorageSize parameter;
- 503 when its weights do not fit the function's memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE) less what this
  process already holds, naming the numbers and the memory parameter. The test process holds far more than
  128 MB, so at 128 MB every model is refused, on every machine;
- 500 with the integrity message when its `.data` file is not the published one, its private folder gone.

Mapped models that fill the temp space are evicted to make room for the next, and a manifest's
`weight_loading` decides how the session holds its weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pytest

from maas.registry import Manifest, ModelRegistry
from maas.runtime import DISABLE_PREPACKING
from maas.runtime.budgets import DISK_HEADROOM_BYTES
from tests.support import external_data
from tests.support.events import json_event
from tests.support.external_data import CHAIN_WIDTH, DATA_FILE, MiB, matmul_chain_model
from tests.support.functions import start_function
from tests.support.llm import TINY_LLM_NAME, publish_tiny_llm
from tests.support.queues import record, result

NAME = "chain"
CHAT = "/openai/v1/chat/completions"
# The smallest memory Lambda gives a function: less than this test process holds before any model.
LAMBDA_MIN_MEMORY_MB = "128"


def publish_chain(
    registry: ModelRegistry, mib: int = 4, weight_loading: Literal["mapped", "prepacked"] | None = None
) -> Manifest:
    files, draft = matmul_chain_model(mib, weight_loading=weight_loading)
    return registry.publish(NAME, files, draft)


def infer(function: ModuleType, version: int) -> tuple[int, dict[str, Any]]:
    rows = np.ones((1, CHAIN_WIDTH), dtype=np.float32)
    document = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ]
    }
    event = json_event("POST", f"/v2/models/{NAME}/versions/{version}/infer", document)
    response = function.lambda_handler(event, None)
    return int(response["statusCode"]), json.loads(response["body"])


def chat(function: ModuleType) -> tuple[int, dict[str, Any]]:
    document = {"model": TINY_LLM_NAME, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
    response = function.lambda_handler(json_event("POST", CHAT, document), None)
    return int(response["statusCode"]), json.loads(response["body"])


def graph_bytes(manifest: Manifest) -> int:
    return sum(manifest.artifact(path).bytes for path in manifest.graph_files)


def mb_up(value: int) -> int:
    return -(-value // MiB)


def prepacking_disabled(function: ModuleType, manifest: Manifest) -> bool:
    model = function.app.service.cache.peek(manifest.name, manifest.version)
    assert model is not None
    try:
        value = model.session.get_session_options().get_session_config_entry(DISABLE_PREPACKING[0])
    except RuntimeError:  # onnxruntime's answer for an entry never set
        return False
    return bool(value == DISABLE_PREPACKING[1])


@pytest.fixture
def own_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return external_data.use_own_temp_dir(monkeypatch, tmp_path)


# ---- the infer function


@pytest.mark.usefixtures("own_temp_dir")
def test_a_model_too_large_for_the_temp_space_is_refused_with_507(
    monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry
) -> None:
    manifest = publish_chain(registry)
    function = start_function(monkeypatch, "infer", MAAS_EPHEMERAL_STORAGE_MB="32")

    status, body = infer(function, manifest.version)

    assert status == 507
    needed = mb_up(graph_bytes(manifest) + DISK_HEADROOM_BYTES)
    assert body["error"].startswith(
        f"model '{NAME}' v{manifest.version}: expected {needed} MB of temp space for its graph files "
        f"({mb_up(graph_bytes(manifest))} MB) and 64 MB of headroom, got 32 MB available "
        "(MAAS_EPHEMERAL_STORAGE_MB=32 less 0 MB that cached models still hold there; "
    )
    assert body["error"].endswith("raise the template parameter EphemeralStorageSize (up to 10240 MB)")
    assert external_data.private_folders(manifest) == []


@pytest.mark.usefixtures("own_temp_dir")
def test_a_model_too_large_for_the_functions_memory_is_refused_with_503(
    monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry
) -> None:
    manifest = publish_chain(registry)
    function = start_function(monkeypatch, "infer", AWS_LAMBDA_FUNCTION_MEMORY_SIZE=LAMBDA_MIN_MEMORY_MB)

    status, body = infer(function, manifest.version)

    assert status == 503
    # Prepacked could not fit, so the rule tried mapped weights: the graph files once.
    match = re.fullmatch(
        rf"model '{NAME}' v1: expected (\d+) MB of memory for its weights, held mapped, got (\d+) MB "
        r"available \(AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 less (\d+) MB this process holds and a margin of "
        r"13 MB\); raise the function's memory, template parameter InferMemorySize \(up to 10240 MB\)",
        body["error"],
    )
    assert match is not None, body["error"]
    needed, available, held = map(int, match.groups())
    assert needed == mb_up(graph_bytes(manifest))
    assert available == max(0, 128 - 13 - held) < needed
    assert external_data.private_folders(manifest) == []


@pytest.mark.usefixtures("own_temp_dir")
def test_a_data_file_changed_in_storage_is_refused_and_its_folder_removed(
    monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry, s3: Any
) -> None:
    manifest = publish_chain(registry)
    external_data.flip_last_bit(s3, registry.version_prefix(NAME, manifest.version) + DATA_FILE)
    function = start_function(monkeypatch, "infer")

    status, answer = infer(function, manifest.version)

    assert status == 500
    assert answer["error"] == (
        f"artifact '{DATA_FILE}' of model '{NAME}' v{manifest.version}: expected the sha256 and size in its "
        "manifest, got different content; refusing to load it"
    )
    assert external_data.private_folders(manifest) == []


@pytest.mark.parametrize(
    ("weight_loading", "environment", "mapped"),
    [
        ("mapped", {}, True),
        ("prepacked", {"MAAS_MAPPED_WEIGHTS_BYTES": "0"}, False),
        (None, {"MAAS_MAPPED_WEIGHTS_BYTES": str(1 * MiB)}, True),
        (None, {}, False),  # 4 MiB is far below the default of 1 GiB
    ],
)
def test_weights_are_held_as_the_manifest_says_else_by_size(
    monkeypatch: pytest.MonkeyPatch,
    registry: ModelRegistry,
    weight_loading: Literal["mapped", "prepacked"] | None,
    environment: dict[str, str],
    mapped: bool,
) -> None:
    manifest = publish_chain(registry, weight_loading=weight_loading)
    function = start_function(monkeypatch, "infer", **environment)

    status, body = infer(function, manifest.version)

    assert status == 200, body
    assert body["outputs"][0]["data"] == [1.0] * CHAIN_WIDTH  # identity weights
    assert prepacking_disabled(function, manifest) is mapped


def test_mapped_models_holding_the_temp_space_are_evicted_to_make_room(
    monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry
) -> None:
    first = publish_chain(registry, weight_loading="mapped")
    second = publish_chain(registry, weight_loading="mapped")
    # One model's files and the headroom fit, two do not: the first still holds its mapped data file.
    storage_mb = mb_up(graph_bytes(first) + DISK_HEADROOM_BYTES + graph_bytes(first) // 2)
    function = start_function(monkeypatch, "infer", MAAS_EPHEMERAL_STORAGE_MB=str(storage_mb))

    assert infer(function, first.version)[0] == 200
    assert infer(function, second.version)[0] == 200

    assert function.app.service.cache.loaded_keys() == [(NAME, second.version)]


# ---- the generate function


@pytest.mark.parametrize(
    ("environment", "status", "refusal"),
    [
        (
            {"MAAS_EPHEMERAL_STORAGE_MB": "16"},
            507,
            rf"model '{TINY_LLM_NAME}' v1: expected 65 MB of temp space for its graph files \(1 MB\) and "
            r"64 MB of headroom, got 16 MB available \(MAAS_EPHEMERAL_STORAGE_MB=16 less 0 MB .*\); raise "
            r"the template parameter EphemeralStorageSize \(up to 10240 MB\)",
        ),
        (
            {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": LAMBDA_MIN_MEMORY_MB},
            503,
            rf"model '{TINY_LLM_NAME}' v1: expected 1 MB of memory for its weights, held mapped, got 0 MB "
            r"available \(AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 less \d+ MB this process holds and a margin of "
            r"13 MB\); raise the function's memory, template parameter GenerateMemorySize \(up to 10240 MB\)",
        ),
    ],
    ids=["temp space", "memory"],
)
def test_the_generate_function_refuses_a_decoder_that_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
    registry: ModelRegistry,
    environment: dict[str, str],
    status: int,
    refusal: str,
) -> None:
    publish_tiny_llm(registry)
    function = start_function(monkeypatch, "generate", **environment)

    answered, body = chat(function)

    assert answered == status
    assert re.fullmatch(refusal, body["error"]["message"]), body["error"]["message"]


@pytest.mark.usefixtures("own_temp_dir")
def test_an_async_request_for_a_model_too_large_for_memory_is_answered_not_redelivered(
    monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry, s3: Any
) -> None:
    """Refused with every cached model counted as evicted: a fresh container has the same memory, so a
    redelivery would only end in the dead-letter queue with no answer."""
    manifest = publish_chain(registry)
    function = start_function(monkeypatch, "async", AWS_LAMBDA_FUNCTION_MEMORY_SIZE=LAMBDA_MIN_MEMORY_MB)
    rows = np.ones((1, CHAIN_WIDTH), dtype=np.float32)
    body = {
        "id": "too-large",
        "model": f"{NAME}@latest",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, CHAIN_WIDTH], "data": rows.ravel().tolist()}
        ],
    }

    response = function.lambda_handler({"Records": [record(body, "message-1")]}, None)

    assert response == {"batchItemFailures": []}
    answer = result(s3, "too-large")
    assert answer["status"] == 503
    assert "of memory for its weights" in answer["error"]
    assert answer["error"].endswith("template parameter InferMemorySize (up to 10240 MB)")
    assert external_data.private_folders(manifest) == []
