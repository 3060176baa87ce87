"""The seed document's naive approach: a handler that unpickles the torch module and runs it per invocation.

The naive handler takes the same HTTP API v2 event, parses its body, `torch.load`s the whole pickled module
(`torch.save(module)`, so `weights_only=False`), runs it under inference_mode and returns JSON. maas is the
infer function warm on the same model, published to the bench store. Both run in this process, interleaved
call by call: torch is already imported here (the zoo trained with it), so the naive side pays neither
torch's import nor its first-call setup, only what it pays on every request; it runs on one thread, its
fastest setting for models this small.
"""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from tests.support.events import load_event
from tests.support.functions import load_function_module

from benchmarks.harness import BenchError, BenchResults
from benchmarks.timing import interleaved
from maas.aws_clients import s3_client

if TYPE_CHECKING:
    from benchmarks.store import BenchStore, ModelZoo

CASE = "naive handler"
RECIPES = ("seed-mlp", "digits-resnet")
ROWS = 3
REPEATS = 300
RATIO_TARGET = 10.0
# The naive side's best setting for models this small. With one thread per CPU, torch's OpenMP pool and
# onnxruntime's spinning one fight over two cores and the naive side slows down tenfold and erratically.
TORCH_THREADS = 1
ANSWER_TOLERANCE = 1e-4


@pytest.mark.parametrize("recipe", RECIPES)
def test_torch_load_per_invocation_against_maas_warm(
    recipe: str,
    bench_results: BenchResults,
    bench_store: BenchStore,
    bench_models: ModelZoo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = bench_models.trained(recipe)
    manifest = bench_models.published(bench_store, recipe)
    module_path = tmp_path / "model.pt"
    torch.save(model.module, module_path)
    (name, rows), *others = model.test_inputs.items()
    if others:
        raise BenchError(f"{recipe}: expected a single-input model, got inputs {list(model.test_inputs)}")
    event = infer_event(manifest.name, name, rows[:ROWS])

    # The function reads its settings and makes its S3 client at import: point both at the bench store.
    for key, value in bench_store.function_env().items():
        monkeypatch.setenv(key, value)
    s3_client.cache_clear()
    infer = load_function_module("infer")

    def maas_handler() -> dict[str, Any]:
        response: dict[str, Any] = infer.lambda_handler(event, None)
        return response

    def torch_handler() -> dict[str, Any]:
        return naive_handler(event, module_path)

    with torch_threads(TORCH_THREADS):
        check_same_answers(recipe, maas_handler(), torch_handler())
        naive_s, maas_s = interleaved(torch_handler, maas_handler, repeats=REPEATS)

    naive_ms = [1000 * s for s in naive_s]
    maas_ms = [1000 * s for s in maas_s]
    bench_results.record(
        CASE,
        f"{recipe}: naive handler (torch.load + module(x) per invocation, in-process, torch imported)",
        naive_ms,
        "ms",
        details={
            "pickled_module_kb": round(module_path.stat().st_size / 1024, 1),
            "rows": ROWS,
            "torch_threads": TORCH_THREADS,
        },
    )
    bench_results.record(CASE, f"{recipe}: maas infer handler, warm (in-process)", maas_ms, "ms")
    ratio = statistics.median(naive_ms) / statistics.median(maas_ms)
    bench_results.record(
        CASE,
        f"{recipe}: naive / maas warm, per invocation",
        ratio,
        "x",
        target=f"≥ {RATIO_TARGET:g}x",
        met=ratio >= RATIO_TARGET,
        details={"repeats": REPEATS},
    )


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def naive_handler(event: dict[str, Any], module_path: Path) -> dict[str, Any]:
    """apigw-pytorch's shape: parse the body, load the pickled module, run it, answer JSON."""
    tensor = json.loads(event["body"])["inputs"][0]
    x = torch.tensor(tensor["data"], dtype=torch.float32).reshape(tensor["shape"])
    module = torch.load(module_path, weights_only=False)
    module.eval()
    with torch.inference_mode():
        y = module(x)
    body = {"outputs": [{"name": "output", "shape": list(y.shape), "data": y.flatten().tolist()}]}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def infer_event(model_name: str, input_name: str, rows: np.ndarray) -> dict[str, Any]:
    event = copy.deepcopy(load_event("http_v2_infer.json"))
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "datatype": "FP32",
                    "shape": list(rows.shape),
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    )
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v2/models/{model_name}/infer"
    event["pathParameters"] = {"name": model_name}
    event["headers"]["content-length"] = str(len(body.encode()))
    event["body"] = body
    return event


def check_same_answers(recipe: str, maas: dict[str, Any], naive: dict[str, Any]) -> None:
    if maas.get("statusCode") != 200:
        raise BenchError(f"{recipe}: expected maas to answer 200, got {maas}")
    served = np.asarray(json.loads(maas["body"])["outputs"][0]["data"], dtype=np.float64).ravel()
    expected = np.asarray(json.loads(naive["body"])["outputs"][0]["data"], dtype=np.float64)
    if served.shape != expected.shape or not np.allclose(served, expected, atol=ANSWER_TOLERANCE):
        raise BenchError(
            f"{recipe}: expected maas and the naive handler to agree, got {served} and {expected}"
        )
