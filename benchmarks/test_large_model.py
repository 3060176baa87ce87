"""Large model (issue 19): the synthetic MatMul chain past protobuf's 2 GB line, 41 fp32 MatMuls of
4096x4096 (2.75 GB of weights in model.onnx.data, maas.training.matmul_chain), built once per run into a
temporary folder that is removed afterwards, and published into the bench store by `maas publish`.

Each measurement runs in a fresh process (benchmarks.large_model_process, benchmarks.cold_start_process):
- publish: `maas publish` of the chain; its peak private memory (the weights are never read into it) and
  the peak RSS of its upload, each against 300 MB, and the whole command's peak RSS, which counts the
  weights the check's one run maps as file-backed pages;
- cold start: the infer function's first answer (download, session, run) against boto3's `download_file`
  of the graph and its data (s3transfer's defaults: 8 MB ranged GETs on 10 threads), an InferenceSession
  with onnxruntime's defaults and one run, paired and alternating as in test_cold_start; the serving
  process's peak RSS after its first answer against the weights' bytes;
- download: the registry's `download_artifact` (parallel ranged GETs, each part's sha256 checked as it
  lands) against one plain GET streamed to a file, unverified and verified as it streams (how maas
  downloaded before), of the data file, taking turns;
- session creation: prepacked (onnxruntime's default) and mapped (session.disable_prepacking=1) on the
  built files, alternating, with the memory each holds.

MAAS_BENCH_LARGE_MODEL_GB=0.3 builds a smaller chain for a quick run (its rows name the size they measured).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.paths import ROOT

from benchmarks.cold_starts import (
    ColdStartRows,
    check_answers,
    infer_event,
    paired_runs,
    record_first_invocations,
)
from benchmarks.harness import MIB, BenchResults, isolated_env, run_isolated
from benchmarks.store import STORE_REGION, BenchStore
from maas.registry import Manifest, ModelRegistry
from maas.training.matmul_chain import DATA_FILE, INPUT_NAME, MatmulChain, build_matmul_chain

SIZE_ENV = "MAAS_BENCH_LARGE_MODEL_GB"
CASE = "large model"
CHILD = "benchmarks.large_model_process"
COLD_START_CHILD = "benchmarks.cold_start_process"
MODEL_NAME = "matmul-chain"
PUBLISH_TARGET_MB = 300.0
COLD_START_TARGET = 1.0
SERVING_RSS_TARGET = 1.15
PAIRS = 3
COLD_START_PAIRS = 5
CHILD_TIMEOUT_S = 600.0
KIB = 1024


@dataclass(frozen=True, slots=True)
class Published:
    chain: MatmulChain
    manifest: Manifest
    report: dict[str, Any]

    @property
    def weight_mb(self) -> float:
        return self.manifest.artifact(DATA_FILE).bytes / MIB

    @property
    def size(self) -> str:
        """The weights in GB of 10^9 bytes, as `maas synthesize --gb` takes them: how the rows name it."""
        return f"{self.manifest.artifact(DATA_FILE).bytes / 1e9:.2f} GB"


@pytest.fixture(scope="module")
def chain() -> Iterator[MatmulChain]:
    folder = Path(tempfile.mkdtemp(prefix="maas-bench-chain-"))
    try:
        size_gb = os.environ.get(SIZE_ENV)
        if size_gb:
            yield build_matmul_chain(folder, target_bytes=round(float(size_gb) * 1e9))
        else:
            yield build_matmul_chain(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def published(chain: MatmulChain, bench_store: BenchStore) -> Published:
    """The chain published by `maas publish` in a fresh process: the publish case's measurement, and the
    version every other case reads."""
    request = {"side": "publish", "model_path": str(chain.model_path), "name": MODEL_NAME}
    report = run_isolated(CHILD, request, isolated_env(bench_store.function_env()), CHILD_TIMEOUT_S)
    registry = ModelRegistry(bench_store.s3, bench_store.bucket)
    manifest = registry.manifest(MODEL_NAME, registry.versions(MODEL_NAME)[-1])
    return Published(chain, manifest, report)


def test_publish_memory(published: Published, bench_results: BenchResults) -> None:
    report = published.report
    size = published.size
    details = {
        "weights_mb": round(published.weight_mb, 1),
        "seconds": round(report["seconds"], 1),
        "upload_seconds": round(report["upload_seconds"], 1),
        "upload_mb_per_s": round(published.weight_mb / report["upload_seconds"], 1),
    }
    private_mb = report["peak_private_kib"] / KIB
    bench_results.record(
        CASE,
        f"maas publish ({size}): peak private memory (RssAnon + RssShmem, sampled every 5 ms)",
        private_mb,
        "MB",
        target=f"≤ {PUBLISH_TARGET_MB:g} MB",
        met=private_mb <= PUBLISH_TARGET_MB,
        details=details,
    )
    upload_mb = report["upload_peak_rss_kib"] / KIB
    bench_results.record(
        CASE,
        f"maas publish ({size}): peak RSS of the upload (VmHWM from registry.publish's start)",
        upload_mb,
        "MB",
        target=f"≤ {PUBLISH_TARGET_MB:g} MB",
        met=upload_mb <= PUBLISH_TARGET_MB,
        details={"rss_at_upload_start_mb": round(report["rss_at_upload_start_kib"] / KIB, 1)},
    )
    bench_results.record(
        CASE,
        f"maas publish ({size}): peak RSS of the whole command (VmHWM)",
        report["peak_rss_kib"] / KIB,
        "MB",
        details={
            "why": "the import check's one run reads every weight through a memory map: file-backed page "
            "cache, counted in RSS while mapped, never private memory",
            "checks_peak_rss_mb": round(report["checks_peak_rss_kib"] / KIB, 1),
        },
    )


def test_cold_start_and_serving_memory(
    published: Published, bench_store: BenchStore, bench_results: BenchResults
) -> None:
    manifest = published.manifest
    row = published.chain.sample_input(rows=1, seed=11)
    env = isolated_env(bench_store.function_env())
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode as a deployed package has it
    data = row.ravel().tolist()
    inputs = [{"name": INPUT_NAME, "datatype": "FP32", "shape": list(row.shape), "data": data}]
    maas_request = {
        "side": "maas",
        "function_path": str(ROOT / "functions" / "infer" / "app.py"),
        "event": infer_event(manifest.name, inputs),
    }
    prefix = ModelRegistry(bench_store.s3, bench_store.bucket).version_prefix(manifest.name, manifest.version)
    baseline_request = {
        "side": "baseline",
        "endpoint_url": bench_store.endpoint_url,
        "region": STORE_REGION,
        "bucket": bench_store.bucket,
        "keys": [prefix + path for path in manifest.graph_files],
        "model_file": manifest.model_file,
        "feeds": {INPUT_NAME: {"dtype": "float32", "shape": list(row.shape), "data": data}},
    }

    maas_runs, baseline_runs = paired_runs(
        COLD_START_CHILD,
        maas_request,
        baseline_request,
        env,
        pairs=COLD_START_PAIRS,
        timeout_s=CHILD_TIMEOUT_S,
        check=lambda maas, baseline: check_answers(manifest, maas, baseline),
    )
    size = published.size
    record_first_invocations(
        bench_results,
        CASE,
        ColdStartRows(
            first=f"{size}: first invocation (fresh process, empty cache)",
            baseline=f"{size}: baseline download_file + InferenceSession + run",
            ratio=f"{size}: first invocation / baseline",
        ),
        maas_runs,
        baseline_runs,
        ratio_target=COLD_START_TARGET,
        first_details={"weights_mb": round(published.weight_mb, 1)},
    )
    peaks_mb = [run["peak_rss_kib"] / KIB for run in maas_runs]
    ratios = [peak / published.weight_mb for peak in peaks_mb]
    bench_results.record(
        CASE,
        f"{size}: peak RSS of the serving process after the first answer / weight bytes",
        ratios,
        "x",
        target=f"≤ {SERVING_RSS_TARGET:g}x",
        met=statistics.median(ratios) <= SERVING_RSS_TARGET,
        details={
            "peak_rss_mb_median": round(statistics.median(peaks_mb), 1),
            "weights_mb": round(published.weight_mb, 1),
            "baseline_peak_rss_mb_median": round(
                statistics.median(run["peak_rss_kib"] / KIB for run in baseline_runs), 1
            ),
        },
    )


def test_download_parallel_against_one_stream(
    published: Published, bench_store: BenchStore, bench_results: BenchResults
) -> None:
    manifest = published.manifest
    env = isolated_env(bench_store.function_env())
    with tempfile.TemporaryDirectory(prefix="maas-bench-download-") as folder:

        def download(how: str) -> dict[str, Any]:
            request = {
                "side": "download",
                "how": how,
                "name": manifest.name,
                "version": manifest.version,
                "path": DATA_FILE,
                "target": str(Path(folder) / DATA_FILE),
            }
            return run_isolated(CHILD, request, env, CHILD_TIMEOUT_S)

        ways = ("parallel", "download_file", "single", "single-verified")
        reports: dict[str, list[dict[str, Any]]] = {how: [] for how in ways}
        for index in range(PAIRS):
            for how in ways[index % len(ways) :] + ways[: index % len(ways)]:
                reports[how].append(download(how))
    speeds = {how: [r["bytes"] / MIB / r["seconds"] for r in runs] for how, runs in reports.items()}
    parts = manifest.artifact(DATA_FILE).parts
    size = published.size

    def peak_mb(runs: list[dict[str, Any]]) -> float:
        return round(float(statistics.median(r["peak_rss_kib"] / KIB for r in runs)), 1)

    for how, what in (
        ("parallel", "registry.download_artifact: ranged GETs per part, each verified as it lands"),
        ("download_file", "boto3 download_file (default TransferConfig), unverified"),
        ("single", "one GET streamed to the file, unverified"),
        ("single-verified", "one GET streamed to the file, sha256 checked as it streams"),
    ):
        bench_results.record(
            CASE,
            f"{size} download, {what}",
            speeds[how],
            "MB/s",
            details={
                "peak_rss_mb_median": peak_mb(reports[how]),
                "part_mb": round(parts.bytes / MIB, 1) if parts else None,
            },
        )
    for other, what in (
        ("download_file", "boto3 download_file, unverified"),
        ("single", "one stream unverified"),
        ("single-verified", "one stream verified as it streams"),
    ):
        bench_results.record(
            CASE,
            f"{size} download MB/s, parallel / {what}",
            [p / s for p, s in zip(speeds["parallel"], speeds[other], strict=True)],
            "x",
        )


def test_session_creation_prepacked_and_mapped(chain: MatmulChain, bench_results: BenchResults) -> None:
    reports: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for index in range(PAIRS):
        for mapped in (False, True) if index % 2 == 0 else (True, False):
            request = {"side": "session", "model_path": str(chain.model_path), "mapped": mapped}
            reports[mapped].append(run_isolated(CHILD, request, isolated_env({}), CHILD_TIMEOUT_S))
    size = f"{chain.weight_bytes / 1e9:.2f} GB"

    def median_mb(runs: list[dict[str, Any]], moment: str, field: str) -> float:
        return round(float(statistics.median(r[moment][field] / KIB for r in runs)), 1)

    for mapped, how in ((False, "prepacked (onnxruntime's default)"), (True, "mapped (disable_prepacking)")):
        runs = reports[mapped]
        bench_results.record(
            CASE,
            f"{size} session creation, {how}",
            [1000 * r["creation_s"] for r in runs],
            "ms",
            details={
                "first_run_ms_median": round(statistics.median(1000 * r["run_s"] for r in runs), 1),
                "rss_anon_after_creation_mb": median_mb(runs, "after_creation_kib", "RssAnon"),
                "rss_file_after_creation_mb": median_mb(runs, "after_creation_kib", "RssFile"),
                "rss_anon_after_run_mb": median_mb(runs, "after_run_kib", "RssAnon"),
                "rss_file_after_run_mb": median_mb(runs, "after_run_kib", "RssFile"),
                "peak_rss_mb": round(statistics.median(r["peak_rss_kib"] / KIB for r in runs), 1),
            },
        )
