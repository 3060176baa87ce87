"""What the layer's bytecode buys a cold start: each function's `import app` from a built layer, with and
without the layer's __pycache__ folders, beside `import onnxruntime, numpy` from the same layer.

As on Lambda: CPython 3.12 (the runtime's), the layer and the function's folder alone on sys.path (`-I -S`),
and no writable bytecode cache (`-B`, PYTHONDONTWRITEBYTECODE), since /opt and /var/task are read-only, so
a module without a pyc is compiled on every start. The copy without bytecode is the same tree hard-linked
less its __pycache__ folders. Each round runs every subject with and without, in a rotating order.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.build_bundle import Bundle, BundleSizes

from benchmarks.harness import MIB, BenchError, BenchResults

CASE = "layer bytecode"
LIBRARIES = "import onnxruntime, numpy"
ROUNDS = 5
CHILD_TIMEOUT_S = 120.0
# A function's environment without a store: creating clients reaches no network.
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "MAAS_BUCKET": "bench-layer-import",
    "MAAS_PROVIDER": "cpu",
}
# argv: the sys.path entries (JSON) and the modules to import; prints the seconds the imports took.
CHILD = """
import importlib, json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started = time.perf_counter()
for name in sys.argv[2:]:
    importlib.import_module(name)
print(time.perf_counter() - started)
"""


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    folder: Path | None
    modules: tuple[str, ...]


def measure_layer_imports(
    bench_results: BenchResults, bundle: Bundle, python312: str, scratch: Path, rounds: int = ROUNDS
) -> None:
    site = bundle.site_packages
    bare = scratch / "layer-without-bytecode"
    shutil.copytree(site, bare, ignore=shutil.ignore_patterns("__pycache__"), copy_function=link_or_copy)
    subjects = [Subject(LIBRARIES, None, ("onnxruntime", "numpy"))] + [
        Subject(f"functions/{name}/app.py", bundle.function(name), ("app",)) for name in bundle.functions
    ]
    layers = {"with bytecode": site, "without": bare}
    samples: dict[tuple[str, str], list[float]] = {}
    for index in range(rounds):
        turn = index % len(subjects)
        for subject in subjects[turn:] + subjects[:turn]:
            for label, layer in list(layers.items())[index % 2 :] + list(layers.items())[: index % 2]:
                seconds = import_seconds(python312, layer, subject)
                samples.setdefault((subject.name, label), []).append(1000 * seconds)
    shutil.rmtree(bare)
    conditions = {
        "python": python312,
        "architecture": bundle.arch,
        "flags": "-I -S -B, PYTHONDONTWRITEBYTECODE=1: sys.path = [layer, function folder]",
        "rounds": rounds,
        "note": "interleaved: each round runs every subject with and without bytecode, moments apart",
    }
    for subject in subjects:
        with_ms, without_ms = samples[(subject.name, "with bytecode")], samples[(subject.name, "without")]
        for label, values in (("with bytecode", with_ms), ("without bytecode", without_ms)):
            bench_results.record(
                CASE, f"{subject.name} from the layer, {label}", values, "ms", details=conditions
            )
        bench_results.record(
            CASE,
            f"{subject.name}: with / without bytecode",
            [w / wo for w, wo in zip(with_ms, without_ms, strict=True)],
            "x",
            details={
                "ratio_of_medians": round(statistics.median(with_ms) / statistics.median(without_ms), 2)
            },
        )
    floor = samples[(LIBRARIES, "with bytecode")]
    for subject in subjects[1:]:
        function_ms = samples[(subject.name, "with bytecode")]
        bench_results.record(
            CASE,
            f"{subject.name} / {LIBRARIES}, both from the layer with bytecode",
            [f / o for f, o in zip(function_ms, floor, strict=True)],
            "x",
            details={"ratio_of_medians": round(statistics.median(function_ms) / statistics.median(floor), 2)},
        )


def record_bytecode_size(bench_results: BenchResults, arch: str, sizes: BundleSizes, build_said: str) -> None:
    bench_results.record(
        CASE,
        f"bytecode in the layer, {arch}",
        sizes.bytecode / MIB,
        "MB",
        details={"build_said": build_said, "share_of_total_%": round(100 * sizes.bytecode / sizes.total, 1)},
    )


def record_not_measured(bench_results: BenchResults, reason: str) -> None:
    bench_results.record(
        CASE, "import from the layer: not measured", 0.0, "ms", details={"measured": False, "reason": reason}
    )


def link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def import_seconds(python312: str, layer: Path, subject: Subject) -> float:
    path = [str(layer)] + ([str(subject.folder)] if subject.folder else [])
    argv: Sequence[str] = [python312, "-I", "-S", "-B", "-c", CHILD, json.dumps(path), *subject.modules]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=CHILD_ENV, timeout=CHILD_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"{CASE}: {subject.name} from {layer} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])
