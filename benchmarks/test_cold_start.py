"""Cold start: the infer function's first invocation in a fresh process against a hand-written baseline.

maas: import functions/infer/app.py (timed apart), then one HTTP API v2 infer request on an empty model
cache: resolve the reference, read the manifest, GET each artifact from the moto server with its sha256,
write it to /tmp, open the session, check its signature, warm it up, answer. The request names the model
bare, as clients do; the bench store sets no alias, so that is the default alias's GET (a 404) and, at the
same time, the GET of the latest pointer, which brings the manifest with it (decision 0024).
Baseline: boto3's `download_file` of the same objects, an InferenceSession on the file, one run; its
imports and its S3 client are timed apart, as the function makes its client at import.

The ratio compares the first invocation with the baseline's download, session and run. Both run in fresh
processes, alternating which goes first, after one unrecorded pair that fills the page cache; the ratio's
samples pair runs made moments apart.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.support.paths import ROOT

from benchmarks.cold_starts import (
    ColdStartRows,
    check_answers,
    infer_event,
    ms_of,
    paired_runs,
    record_first_invocations,
)
from benchmarks.harness import BenchResults, isolated_env
from benchmarks.store import STORE_REGION
from maas.registry import Manifest, ModelRegistry
from maas.runtime import TextTokenizer

if TYPE_CHECKING:
    from benchmarks.store import BenchStore, ModelZoo
    from maas.training import TrainedModel

CASE = "cold start"
CHILD = "benchmarks.cold_start_process"
RECIPES = ("seed-mlp", "digits-resnet", "minilm-embed")
PAIRS = 5
ROWS = 3
CHILD_TIMEOUT_S = 300.0
TEXTS = (
    "A man is playing a guitar on stage.",
    "How do I reset my password?",
    "The quarterly report shows revenue grew by 12 percent.",
)


@pytest.mark.parametrize("recipe", RECIPES)
def test_first_invocation_against_download_session_and_run(
    recipe: str, bench_results: BenchResults, bench_store: BenchStore, bench_models: ModelZoo
) -> None:
    manifest = bench_models.published(bench_store, recipe)
    request_inputs, graph_feeds = inputs_of(bench_models.trained(recipe), manifest)
    env = isolated_env(bench_store.function_env())
    # Bytecode as a deployed package has it: the unrecorded first pair rewrites what an edit made stale.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    maas_request = {
        "side": "maas",
        "function_path": str(ROOT / "functions" / "infer" / "app.py"),
        "event": infer_event(manifest.name, request_inputs),
    }
    registry = ModelRegistry(bench_store.s3, bench_store.bucket)
    baseline_request = {
        "side": "baseline",
        "endpoint_url": bench_store.endpoint_url,
        "region": STORE_REGION,
        "bucket": bench_store.bucket,
        "keys": [
            registry.version_prefix(manifest.name, manifest.version) + path for path in loaded_files(manifest)
        ],
        "model_file": manifest.model_file,
        "feeds": graph_feeds,
    }

    maas_runs, baseline_runs = paired_runs(
        CHILD,
        maas_request,
        baseline_request,
        env,
        pairs=PAIRS,
        timeout_s=CHILD_TIMEOUT_S,
        check=lambda maas, baseline: check_answers(manifest, maas, baseline),
    )

    artifact_mb = round(sum(manifest.artifact(path).bytes for path in loaded_files(manifest)) / 2**20, 2)
    record_first_invocations(
        bench_results,
        CASE,
        ColdStartRows(
            first=f"{recipe}: first invocation (fresh process, empty cache)",
            baseline=f"{recipe}: baseline download_file + InferenceSession + run",
            ratio=f"{recipe}: first invocation / baseline",
        ),
        maas_runs,
        baseline_runs,
        first_details={"artifacts_mb": artifact_mb},
    )
    bench_results.record(
        CASE,
        f"{recipe}: import functions/infer/app.py (baseline: boto3, onnxruntime, numpy + client)",
        ms_of(maas_runs, "import_s"),
        "ms",
        details={
            "baseline_imports_ms_median": round(statistics.median(ms_of(baseline_runs, "import_s")), 1),
            "baseline_client_ms_median": round(statistics.median(ms_of(baseline_runs, "client_s")), 1),
        },
    )
    # What a caller waits for in all: the function's import and first answer against the baseline's imports,
    # client, download, session and run. Informational: the import has its own target (test_import_time).
    maas_total = [1000 * (r["import_s"] + r["first_invocation_s"]) for r in maas_runs]
    baseline_total = [1000 * (r["import_s"] + r["client_s"] + r["first_invocation_s"]) for r in baseline_runs]
    bench_results.record(
        CASE,
        f"{recipe}: import + first invocation / baseline imports + client + download + session + run",
        [m / b for m, b in zip(maas_total, baseline_total, strict=True)],
        "x",
        details={
            "maas_ms_median": round(statistics.median(maas_total), 1),
            "baseline_ms_median": round(statistics.median(baseline_total), 1),
        },
    )
    for side, runs in (("maas", maas_runs), ("baseline", baseline_runs)):
        bench_results.record(
            CASE,
            f"{recipe}: peak RSS after the first answer, {side}",
            [run["peak_rss_kib"] / 1024 for run in runs],
            "MB",
            details={
                "rss_after_import_mb": round(
                    statistics.median(r["rss_after_import_kib"] for r in runs) / 1024, 1
                )
            },
        )


def loaded_files(manifest: Manifest) -> list[str]:
    """The objects a load reads: the graph, its external data, and a text model's tokenizer."""
    tokenizer = manifest.tokenizer
    return [*manifest.graph_files, *([tokenizer.tokenizer_file] if tokenizer else [])]


def inputs_of(model: TrainedModel, manifest: Manifest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The V2 request's inputs, and the same rows as the graph's feeds for the baseline.

    A text model is sent text; the baseline gets the ids the version's own tokenizer makes of it."""
    tokenizer = manifest.tokenizer
    if tokenizer is not None:
        texts = np.array(TEXTS, dtype=object)
        encoder = TextTokenizer(model.files[tokenizer.tokenizer_file], tokenizer)
        feeds = encoder.encode(texts)
        request = [
            {"name": tokenizer.text_input, "datatype": "BYTES", "shape": [len(TEXTS)], "data": list(TEXTS)}
        ]
    else:
        feeds = {name: array[:ROWS] for name, array in model.test_inputs.items()}
        datatypes = {spec.name: spec.datatype for spec in manifest.signature.inputs}
        request = [
            {
                "name": name,
                "datatype": datatypes[name],
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
            for name, array in feeds.items()
        ]
    graph_feeds = {
        name: {"dtype": str(array.dtype), "shape": list(array.shape), "data": array.ravel().tolist()}
        for name, array in feeds.items()
    }
    return request, graph_feeds
