"""Explanation latency: Shapley value sampling (200 permutations, seed 0) of one row of the MLP and of the
digits CNN as the function serves it, against the same model evaluations made as separate one-row
`session.run` calls, interleaved in one process.

The served side is `InferenceService.explain` on a warm function (the model already loaded): it plans the
perturbations, stacks them and runs them through onnxruntime in chunks of MAAS_EXPLAIN_BATCH_ROWS. The other
side is those very rows, recorded from the explainer's own runs and split into one-row feeds beforehand,
each run by a bare `session.run` on the session the function loaded, so only the runs are timed and both
sides share the session's settings. The one-row outputs are checked against the batched ones before
anything is timed: both sides do the same work.

The whole handler path (a V2 JSON POST /v2/models/<name>/explain event) is timed too, interleaved with the
service call so its overhead is a difference of neighbours, and for the CNN the explanation at a few batch
sizes, which is what the default batch size rests on.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.harness import BenchError, BenchResults
from benchmarks.store import BenchStore, ModelZoo
from benchmarks.timing import interleaved
from benchmarks.workloads import json_document, json_infer_event, repeats_within, workload
from maas.apps.infer import InferFunction
from maas.config import ENV_EXPLAIN_BATCH_ROWS
from maas.explain.batching import ExplainLimits
from maas.explain.explainer import explain_loaded
from maas.explain.parameters import EXPLANATION, ExplainParameters
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.registry import Manifest
from maas.registry.references import parse_ref
from maas.runtime import LoadedModel, usable_cpus
from maas.service.inference import InferenceService

CASE = "explain latency"
RECIPES = ("seed-mlp", "digits-resnet")
SWEEP_RECIPE = "digits-resnet"
METHOD = "shapley"
SAMPLES = 200
SEED = 0
# Latency does not depend on which output is explained; a fixed one keeps the work identical run to run.
TARGET = 0
MS = 1e3
# Seconds of timing per recipe for the interleaved pair: the MLP gets MOST_PAIRS, the CNN (whose separate
# runs take seconds) LEAST_PAIRS.
PAIR_BUDGET_S = 10.0
LEAST_PAIRS, MOST_PAIRS = 6, 100
HANDLER_BUDGET_S = 3.0
LEAST_HANDLER_PAIRS, MOST_HANDLER_PAIRS = 4, 100
# Rounds over every batch size in turn, so a busy moment slows all sizes alike.
SWEEP_BATCH_ROWS = (256, 1024, 4096)
SWEEP_ROUNDS = 4
# Batched and one-row runs of a float32 graph may differ in the last bits.
AGREEMENT_TOLERANCE = 1e-4
# Ours, as none was given: batching the perturbations must never lose to running them one by one.
MIN_SPEEDUP = 1.0
OK = 200
Array = npt.NDArray[Any]
SessionRun = Callable[[list[str], dict[str, Array]], list[Array]]


# The handler prints an EMF metric line per call, as on Lambda's log pipe.
pytestmark = pytest.mark.usefixtures("stdout_to_devnull")


def explain_parameters() -> ExplainParameters:
    return ExplainParameters(method=METHOD, n_samples=SAMPLES, seed=SEED, target=TARGET)


def explain_event(model: str, inputs: dict[str, Array]) -> dict[str, Any]:
    """The HTTP API v2 event for POST /v2/models/<model>/explain with a V2 JSON body carrying the method."""
    event = json_infer_event(model, inputs)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v2/models/{model}/explain"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /v2/models/{name}/explain"
    document = {**json_document(inputs), "parameters": explain_parameters().model_dump(exclude_none=True)}
    event["body"] = json.dumps(document)
    event["headers"] = {**event["headers"], "content-length": str(len(event["body"]))}
    return event


@dataclass(frozen=True, slots=True)
class GraphRun:
    feeds: dict[str, Array]
    outputs: list[str]
    results: list[Array]


def recorded_runs(
    call: Callable[[], InferenceResponse], monkeypatch: pytest.MonkeyPatch
) -> tuple[InferenceResponse, list[GraphRun]]:
    """`call`'s response, and every graph run it made, in order, with copies of their feeds."""
    runs: list[GraphRun] = []
    original = LoadedModel.run_graph

    def recording(model: LoadedModel, feeds: Any, outputs: Any, **options: Any) -> list[Array]:
        results = original(model, feeds, outputs, **options)
        runs.append(GraphRun({k: np.array(v, copy=True) for k, v in feeds.items()}, list(outputs), results))
        return results

    with monkeypatch.context() as patch:
        patch.setattr(LoadedModel, "run_graph", recording)
        response = call()
    return response, runs


@dataclass(frozen=True, slots=True)
class SeparateRuns:
    """The explanation's perturbed rows as one-row feeds, each with the output row its batched run gave."""

    feeds: list[dict[str, Array]]
    output: str
    batched: list[Array]

    def run(self, session_run: SessionRun) -> None:
        for feed in self.feeds:
            session_run([self.output], feed)

    def check(self, session_run: SessionRun, model: str) -> None:
        """Raise unless every one-row run gives what its row gave in the batched run."""
        worst = 0.0
        for feed, batched in zip(self.feeds, self.batched, strict=True):
            (alone,) = session_run([self.output], feed)
            scale = max(float(np.abs(batched).max()), 1.0)
            worst = max(worst, float(np.abs(alone[0] - batched).max()) / scale)
        if worst > AGREEMENT_TOLERANCE:
            raise BenchError(
                f"{model}: expected one-row runs to match the batched rows within {AGREEMENT_TOLERANCE:g} "
                f"(relative), got {worst:.3g}"
            )


def separate_runs(response: InferenceResponse, graph_runs: list[GraphRun]) -> SeparateRuns:
    """The perturbation runs of an explanation (its last `model_runs` graph runs; any before predict) split
    into one-row feeds."""
    settings = response.parameters[EXPLANATION]
    evaluations, model_runs = settings["evaluations"], settings["model_runs"]
    perturbation_runs = graph_runs[-model_runs:]
    if len(graph_runs) < model_runs or any(run.outputs != [settings["output"]] for run in perturbation_runs):
        raise BenchError(
            f"{response.model_name}: expected {model_runs} runs of the explained output, got "
            f"{len(graph_runs)} runs with outputs {[run.outputs for run in graph_runs]}"
        )
    feeds: list[dict[str, Array]] = []
    batched: list[Array] = []
    for run in perturbation_runs:
        rows = len(next(iter(run.feeds.values())))
        feeds.extend({name: array[i : i + 1] for name, array in run.feeds.items()} for i in range(rows))
        batched.extend(run.results[0][:rows])
    if len(feeds) != evaluations:
        raise BenchError(
            f"{response.model_name}: expected the runs to hold the {evaluations:,} evaluations the response "
            f"reports, got {len(feeds):,} rows"
        )
    return SeparateRuns(feeds, settings["output"], batched)


def p95_ms(seconds: list[float]) -> float:
    if len(seconds) < 2:
        return seconds[0] * MS
    return statistics.quantiles(seconds, n=20, method="inclusive")[18] * MS


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * MS


def batch_rows_sweep(
    model: LoadedModel, request: InferenceRequest, service: InferenceService
) -> dict[str, Any]:
    """Median ms of the explanation alone (explain_loaded: no lookup, no metric) at each batch size, with
    its model runs, timed round-robin over the sizes."""
    parameters = explain_parameters()
    calls = {
        rows: partial(
            explain_loaded,
            model,
            request,
            parameters,
            ExplainLimits(service.settings.explain_max_evaluations, rows),
        )
        for rows in SWEEP_BATCH_ROWS
    }
    model_runs = {rows: call().parameters[EXPLANATION]["model_runs"] for rows, call in calls.items()}
    seconds: dict[int, list[float]] = {rows: [] for rows in calls}
    for _ in range(SWEEP_ROUNDS):
        for rows, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[rows].append(time.perf_counter() - started)
    return {
        str(rows): {"median_ms": round(median_ms(seconds[rows]), 2), "model_runs": model_runs[rows]}
        for rows in calls
    } | {"calls_each": SWEEP_ROUNDS}


def loaded_model(service: InferenceService, manifest: Manifest) -> LoadedModel:
    model = service.cache.peek(manifest.name, manifest.version)
    if model is None:
        raise BenchError(f"model '{manifest.name}' v{manifest.version}: expected it loaded after a request")
    return model


@pytest.mark.parametrize("recipe", RECIPES)
def test_shapley_against_separate_session_runs(
    recipe: str,
    infer_function: ModuleType,
    bench_store: BenchStore,
    bench_models: ModelZoo,
    bench_results: BenchResults,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = bench_models.published(bench_store, recipe)
    inputs = workload(bench_models.trained(recipe), 1).serving
    app: InferFunction = infer_function.app
    service = app.service
    request = InferenceRequest(inputs=[Tensor(name, "FP32", array) for name, array in inputs.items()])
    served = partial(service.explain, parse_ref(manifest.name), request, explain_parameters())
    served()  # loads the model: everything below is warm
    response, graph_runs = recorded_runs(served, monkeypatch)
    model = loaded_model(service, manifest)
    runs = separate_runs(response, graph_runs)
    runs.check(model.session.run, manifest.name)
    separate = partial(runs.run, model.session.run)

    repeats = repeats_within((served, separate), PAIR_BUDGET_S, least=LEAST_PAIRS, most=MOST_PAIRS)
    served_s, separate_s = interleaved(served, separate, repeats=repeats, warmup=0)

    event = explain_event(manifest.name, inputs)
    handler = partial(infer_function.lambda_handler, event, None)
    answer = handler()
    if answer.get("statusCode") != OK:
        raise BenchError(
            f"{event['rawPath']}: expected 200, got {answer.get('statusCode')}: {answer.get('body')}"
        )
    handler_pairs = repeats_within(
        (handler, served), HANDLER_BUDGET_S, least=LEAST_HANDLER_PAIRS, most=MOST_HANDLER_PAIRS
    )
    handler_s, beside_s = interleaved(handler, served, repeats=handler_pairs, warmup=0)
    handler_overhead_ms = statistics.median([h - s for h, s in zip(handler_s, beside_s, strict=True)]) * MS

    settings = response.parameters[EXPLANATION]
    evaluations = settings["evaluations"]
    what = f"{recipe}: {METHOD}, {SAMPLES} samples, 1 row ({evaluations:,} evaluations)"
    common: dict[str, Any] = {
        "method": METHOD,
        "n_samples": SAMPLES,
        "seed": SEED,
        "target": TARGET,
        "baseline": settings.get("baseline"),
        "feature_groups": settings.get("feature_groups"),
        "evaluations": evaluations,
        "model_runs": settings["model_runs"],
        "batch_rows": service.settings.explain_batch_rows,
        "batch_rows_from": f"{ENV_EXPLAIN_BATCH_ROWS} (Settings.explain_batch_rows)",
        "intra_op_threads": usable_cpus(),
        "pairs": repeats,
    }
    served_details: dict[str, Any] = {
        **common,
        "median_ms": round(median_ms(served_s), 2),
        "p95_ms": round(p95_ms(served_s), 2),
        "what": "InferenceService.explain, warm: plan, perturbations, batched runs, attributions",
        "handler_median_ms": round(median_ms(handler_s), 2),
        "handler_p95_ms": round(p95_ms(handler_s), 2),
        "handler_overhead_ms": round(handler_overhead_ms, 2),
        "handler_pairs": handler_pairs,
        "handler": "the infer function's lambda_handler on a V2 JSON POST /v2/models/<name>/explain event",
    }
    if recipe == SWEEP_RECIPE:
        served_details["batch_rows_sweep"] = batch_rows_sweep(model, request, service)
    bench_results.record(
        CASE, f"{what}: served explain", [s * MS for s in served_s], "ms", details=served_details
    )
    bench_results.record(
        CASE,
        f"{what}: as {evaluations:,} separate 1-row session.run calls",
        [s * MS for s in separate_s],
        "ms",
        details={
            **common,
            "median_ms": round(median_ms(separate_s), 2),
            "p95_ms": round(p95_ms(separate_s), 2),
            "what": "the explainer's own perturbed rows, prebuilt as 1-row feeds, one bare session.run "
            "each on the function's session",
        },
    )
    speedups = [s / b for s, b in zip(separate_s, served_s, strict=True)]
    bench_results.record(
        CASE,
        f"{what}: served speedup over separate session.run calls",
        speedups,
        "x",
        target=f">= {MIN_SPEEDUP:.1f}x (ours)",
        met=statistics.median(speedups) >= MIN_SPEEDUP,
        details={
            **common,
            "served_ms": round(median_ms(served_s), 2),
            "separate_ms": round(median_ms(separate_s), 2),
        },
    )
