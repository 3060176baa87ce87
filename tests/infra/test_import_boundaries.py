"""Non-negotiable 1: nothing a Lambda function imports may pull in torch, onnx or maas.training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

FUNCTIONS = sorted(ROOT.glob("functions/*/app.py"))
FORBIDDEN = ("torch", "onnx", "onnxscript", "maas.training", "maas.local", "maas.cli", "moto")
# Needed at run time, but only once a model that takes text loads: importing a function must not pay for it.
LOADED_ON_DEMAND = ("tokenizers", "jinja2")
# The functions that run models; the registry function must start without onnxruntime.
MODEL_RUNNERS = {"infer", "batch", "async", "generate"}
# Each function's composition root in maas.apps (async is a keyword, hence async_).
COMPOSITION_ROOTS = {
    "infer": "maas.apps.infer",
    "registry": "maas.apps.registry",
    "batch": "maas.apps.batch",
    "async": "maas.apps.async_",
    "generate": "maas.apps.generate",
}

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("function_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.lambda_handler)
print(json.dumps(sorted(sys.modules)))
"""


def test_there_is_at_least_one_function() -> None:
    assert FUNCTIONS, "expected functions/*/app.py"


@pytest.mark.parametrize("app", FUNCTIONS, ids=lambda p: p.parent.name)
def test_importing_a_function_leaves_heavy_and_offline_modules_out(app: Path) -> None:
    # A fresh interpreter: this test process has torch loaded already.
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, str(app)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
        cwd=ROOT,
    )
    modules = json.loads(completed.stdout.strip().splitlines()[-1])
    leaked = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == []
    eager = [m for m in modules if any(m == f or m.startswith(f + ".") for f in LOADED_ON_DEMAND)]
    assert eager == []
    assert "maas.protocol" in modules  # the probe really loaded maas: every function speaks a wire protocol
    # Wired by its own composition root alone: no other function's wiring comes along.
    roots = {root for root in COMPOSITION_ROOTS.values() if root in modules}
    assert roots == {COMPOSITION_ROOTS[app.parent.name]}
    # Only the functions that run models pay for onnxruntime at cold start.
    assert ("onnxruntime" in modules) == (app.parent.name in MODEL_RUNNERS)
