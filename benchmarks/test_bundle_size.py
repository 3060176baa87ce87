"""Bundle size: the unzipped layer plus function, built as `sam build` builds it, against Lambda's limits.

infra/build_bundle.py builds MaasLayer through shared/Makefile, the target `sam build` runs (exactly
shared/requirements.lock's wheels for CPython 3.12 on Linux, onnxruntime's offline tooling and all but four
of botocore's service models left out, plus maas less its offline subpackages, under python/) and each
functions/<name>/ folder, for x86_64 and arm64, checks the layer against the lock and, for this machine's
architecture when a CPython 3.12 is found, imports every function with the layer alone. Lambda holds a
function's unzipped code plus its layers against 250 MB; the target is ≤ 160 MB for what we ship (our own
botocore included, decision 0025). The size without the distributions the python3.12 runtime also provides
is recorded beside it: what relying on the runtime's SDK would save. The layer holds CPython 3.12 bytecode
of the modules the functions import (shared/layer_bytecode.py): its size, and what it saves each function's
import from the layer (benchmarks/layer_import.py), are the "layer bytecode" rows.

The lock's wheels are kept in bench-results/bundle/wheelhouse/, so a run after the first asks no index; the
built trees live in a temporary folder. Without a reachable package index and with wheels missing from the
wheelhouse, the case records that it could not measure and skips; it does not fail the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from infra.build_bundle import (
    ARCHITECTURES,
    DEFAULT_WHEELHOUSE,
    FUNCTIONS_SOURCE,
    HOST_ARCH,
    LOCK_NAME,
    RUNTIME,
    RUNTIME_PROVIDED,
    Bundle,
    BundleError,
    BundleSizes,
    IndexUnreachableError,
    build_bundle,
    excluded_bytes,
    fetch_wheels,
    measure,
)
from infra.layer_lock import BOTOCORE_SERVICES, LAYER_SOURCE, OFFLINE_ONLY_SUBPACKAGES, PRUNED_PATHS
from infra.lock_layer import PLATFORMS
from infra.runtime_python import find_python312

from benchmarks.harness import MIB, BenchError, BenchResults
from benchmarks.layer_import import measure_layer_imports, record_bytecode_size, record_not_measured

CASE = "bundle size"
TARGET_MB = 160.0
# Lambda's limit on a function's unzipped code plus all its layers: 262,144,000 bytes, i.e. 250 MiB.
LAMBDA_UNZIPPED_LIMIT_MB = 250.0
# Lambda's limit on a zip uploaded with the request itself; `sam deploy` uploads through S3 instead.
DIRECT_UPLOAD_ZIP_LIMIT_MB = 50.0
TOP_PACKAGES = 5
# The architecture template.yaml deploys (Globals Architectures, CompatibleArchitectures of MaasLayer).
DEPLOYED_ARCH = "x86_64"
# Both architectures' trees and their zips, with room to spare.
SCRATCH_NEEDED_BYTES = 2 * 1024 * MIB


@dataclass(frozen=True, slots=True)
class Built:
    bundle: Bundle
    sizes: BundleSizes
    build_s: float
    measure_s: float


def test_bundle_size_against_lambdas_limits(bench_results: BenchResults) -> None:
    started = time.perf_counter()
    outcomes: dict[str, Built | IndexUnreachableError] = {}
    if HOST_ARCH:
        # Each architecture's build compiles its bytecode with this machine's wheels: fetched once, here,
        # so that the two builds do not download the same files into one folder at once.
        with contextlib.suppress(IndexUnreachableError):
            fetch_wheels(LAYER_SOURCE / LOCK_NAME, HOST_ARCH, DEFAULT_WHEELHOUSE / HOST_ARCH)
    with tempfile.TemporaryDirectory(prefix="maas-bundle-", dir=scratch_root()) as folder:
        # Both architectures at once: each is mostly waiting on pip's index queries or on zlib.
        with ThreadPoolExecutor(max_workers=len(ARCHITECTURES)) as pool:
            futures = {
                arch: pool.submit(build_and_measure, arch, Path(folder) / arch) for arch in ARCHITECTURES
            }
        for arch, future in futures.items():
            try:
                outcomes[arch] = future.result()
            except IndexUnreachableError as exc:
                outcomes[arch] = exc
            except BundleError as exc:
                raise BenchError(f"{CASE}: could not build the {arch} bundle: {exc}") from exc
        # What the bytecode saves, on the one architecture this machine runs.
        host = outcomes.get(HOST_ARCH)
        python312 = find_python312()
        if not isinstance(host, Built):
            record_not_measured(
                bench_results, f"no layer was built for this machine ({HOST_ARCH or 'unknown'})"
            )
        elif python312 is None:
            record_not_measured(bench_results, "no working CPython 3.12 found (infra/runtime_python.py)")
        else:
            measure_layer_imports(bench_results, host.bundle, python312, Path(folder))
    elapsed_s = time.perf_counter() - started

    excluded = {
        "shared/": mb_map(excluded_bytes(LAYER_SOURCE)),
        "functions/": mb_map(excluded_bytes(FUNCTIONS_SOURCE)),
    }
    unmeasured: list[str] = []
    for arch in ARCHITECTURES:
        outcome = outcomes[arch]
        if isinstance(outcome, IndexUnreachableError):
            bench_results.record(
                CASE,
                f"layer + function, unzipped, {arch}: not measured",
                0.0,
                "MB",
                details={"measured": False, "reason": str(outcome)},
            )
            unmeasured.append(arch)
            continue
        record_arch(bench_results, outcome, excluded, elapsed_s)
        record_bytecode_size(bench_results, arch, outcome.sizes, outcome.bundle.bytecode)
    if unmeasured:
        pytest.skip(f"{CASE}: not measured for {', '.join(unmeasured)}: the package index is unreachable")


def scratch_root() -> Path | None:
    """A memory-backed folder when there is room: writing, zipping and deleting two ~200 MB trees of ~10,000
    files takes a disk-backed one tens of seconds."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= SCRATCH_NEEDED_BYTES:
        return shm
    return None


def build_and_measure(arch: str, out: Path) -> Built:
    started = time.perf_counter()
    bundle = build_bundle(arch, out, wheelhouse=DEFAULT_WHEELHOUSE / arch)
    built = time.perf_counter()
    sizes = measure(bundle, scratch=out.parent)
    return Built(bundle, sizes, built - started, time.perf_counter() - built)


def record_arch(
    bench_results: BenchResults, built: Built, excluded: Mapping[str, Any], elapsed_s: float
) -> None:
    bundle, sizes = built.bundle, built.sizes
    arch = bundle.arch
    total_mb = sizes.total / MIB
    packages = sizes.packages()
    runtime_provided = {
        entry: size for entry, size in sizes.entries.items() if sizes.owners[entry] in RUNTIME_PROVIDED
    }
    note = "" if arch == DEPLOYED_ARCH else " (template.yaml deploys x86_64 only: for comparison)"
    bench_results.record(
        CASE,
        f"layer + function, unzipped, {arch}",
        total_mb,
        "MB",
        target=f"≤ {TARGET_MB:.0f} MB (Lambda's limit: {LAMBDA_UNZIPPED_LIMIT_MB:.0f} MB)",
        met=total_mb <= TARGET_MB,
        details={
            "architecture": arch + note,
            "runtime": RUNTIME,
            "pip_platforms": list(PLATFORMS[arch]),
            "layer_mb": mb(sizes.layer),
            "largest_function": sizes.largest_function,
            "functions_mb": mb_map(sizes.functions),
            "within_lambda_limit": total_mb <= LAMBDA_UNZIPPED_LIMIT_MB,
            "lambda_limit_headroom_mb": round(LAMBDA_UNZIPPED_LIMIT_MB - total_mb, 1),
            "packages_mb": mb_map(packages),
            "dist_info_mb": mb(sizes.dist_info),
            "by_distribution_mb": mb_map(sizes.by_distribution()),
            "maas_mb": mb(sizes.entries.get("maas", 0)),
            # CPython 3.12 pycs of the modules the functions import (shared/layer_bytecode.py).
            "bytecode_mb": mb(sizes.bytecode),
            # Left out of the layer by shared/Makefile (their size in shared/, not shipped).
            "maas_offline_only_left_out_mb": mb_map(sizes.offline_only),
            "offline_only_subpackages": list(OFFLINE_ONLY_SUBPACKAGES),
            "pruned_paths": list(PRUNED_PATHS),
            "botocore_services_kept": list(BOTOCORE_SERVICES),
            # Left out by SAM's EXCLUDED_FILES when it copies the functions' folders (not shipped).
            "excluded_from_sources_mb": dict(excluded),
            "lock": f"shared/{LOCK_NAME}",
            "versions": bundle.versions,
            # wheelhouse: every locked wheel was at hand; index: some were downloaded first.
            "wheels_from": bundle.fetch.source,
            "fetch_s": round(bundle.fetch.seconds, 1),
            # True, or why the layer was not imported on CPython 3.12 with nothing else on sys.path.
            "imports_on_cpython312_alone": bundle.imports_checked,
            "build_s": round(built.build_s, 1),
            "measure_and_zip_s": round(built.measure_s, 1),
            "case_s": round(elapsed_s, 1),
        },
    )
    bench_results.record(
        CASE,
        f"layer + function, unzipped, {arch}, without the runtime's boto3 & co",
        sizes.total_without_runtime_provided / MIB,
        "MB",
        details={
            "left_out_mb": mb_map(runtime_provided),
            "left_out_total_mb": mb(sizes.runtime_provided),
            "distributions": sorted(RUNTIME_PROVIDED),
            "note": "what relying on the runtime's own botocore would save; decision 0025 ships a pinned one",
        },
    )
    if sizes.layer_zipped is not None:
        zipped_mb = sizes.layer_zipped / MIB
        bench_results.record(
            CASE,
            f"layer, zipped, {arch}",
            zipped_mb,
            "MB",
            details={
                "functions_zipped_mb": mb_map(sizes.functions_zipped),
                "compression": "DEFLATE, zlib's default level (as `sam package` zips)",
                "direct_upload_limit_mb": DIRECT_UPLOAD_ZIP_LIMIT_MB,
                "over_direct_upload_limit": zipped_mb > DIRECT_UPLOAD_ZIP_LIMIT_MB,
                "note": "`sam deploy` uploads the layer zip to S3 and publishes it from there, where the "
                "50 MB direct-upload limit does not apply; the 250 MB unzipped limit does",
            },
        )
    for rank, (entry, size) in enumerate(list(packages.items())[:TOP_PACKAGES], start=1):
        bench_results.record(
            CASE,
            f"largest package #{rank}, {arch}: {entry}",
            size / MIB,
            "MB",
            details={
                "distribution": sizes.owners[entry] or entry,
                "share_of_total_%": round(100 * size / sizes.total, 1),
            },
        )


def mb(size: int) -> float:
    return round(size / MIB, 2)


def mb_map(sizes: Mapping[str, int]) -> dict[str, float]:
    return {name: mb(size) for name, size in sizes.items()}
