"""What a function's cold start leaves for later: each functions/*/app.py, imported in a fresh process, has
not imported the modules nor built the wire types that its first request does not need.

Held here so that a new top-level import cannot quietly bring them back (the figures are in the import-time
benchmark; no test asserts on time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support.paths import ROOT

PROBE = """
import importlib, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("function_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
built = {}
for dotted in json.loads(sys.argv[2]):
    owner, _, name = dotted.rpartition(".")
    if owner in sys.modules:
        built[dotted] = getattr(importlib.import_module(owner), name).__pydantic_complete__
print(json.dumps({"modules": sorted(sys.modules), "built": built}))
"""

# Modules each function must not import at start, and why.
NOT_IMPORTED: dict[str, dict[str, str]] = {
    "registry": {
        "numpy": "the registry function runs no model (maas.datatype_table names the datatypes)",
        "onnxruntime": "the registry function runs no model",
        "maas.protocol.v2_types": "the registry routes answer errors without the V2 wire types",
        "maas.explain.parameters": "nothing the registry serves explains",
    },
    "async": {
        "maas.service.batch_jobs": "the async function runs no batch jobs",
        "aws_lambda_powertools.event_handler": "the queue functions serve no HTTP",
        # Powertools' batch utility imports its pydantic parser models when pydantic is imported first.
        "aws_lambda_powertools.utilities.parser": "the queue functions parse SQS records as data classes",
    },
    "infer": {
        "aws_lambda_powertools.event_handler": "the fast path answers infer and explain without the router",
        "maas.api.docs_routes": "the general HTTP app is built by the first request the fast path leaves",
    },
    "batch": {
        "aws_lambda_powertools.event_handler": "the queue functions serve no HTTP",
        "aws_lambda_powertools.utilities.parser": "the queue functions parse SQS records as data classes",
    },
}
# Imported by the first request that needs them, in every function.
EXPLAINER = (
    "maas.explain.explainer",
    "maas.explain.batching",
    "maas.explain.plans",
    "maas.explain.attribution",
)

# Wire types only some routes use: declared, not yet built, after a function's import.
BUILT_ON_FIRST_USE = (
    "maas.explain.parameters.ExplainParameters",
    "maas.protocol.v2_types.ExplainRequestBody",
    "maas.protocol.v2_types.ModelMetadataResponse",
    "maas.protocol.v2_types.ServerMetadataResponse",
    "maas.protocol.v2_types.ModelListResponse",
    "maas.protocol.v1_types.ExplainRequest",
    "maas.protocol.v1_types.V1ExplainResponse",
    "maas.protocol.registry_types.SetAliasRequest",
    "maas.protocol.registry_types.RegistryModelList",
    "maas.protocol.openai_types.CompletionRequest",
    "maas.protocol.openai_types.Completion",
    "maas.protocol.openai_types.ModelList",
    "maas.protocol.generate_types.GenerateRequest",
    "maas.service.job_layout.AsyncError",
)
# Wire types a function's first request uses: built at import, so that request does not pay for them.
BUILT_AT_IMPORT = (
    "maas.registry.manifest.Manifest",
    "maas.protocol.v2_types.InferenceRequestBody",
    "maas.protocol.v2_types.HttpInferenceRequestBody",
    "maas.protocol.v2_types.InferenceResponseBody",
    "maas.protocol.v1_types.PredictRequest",
    "maas.protocol.openai_types.ChatCompletionRequest",
    "maas.protocol.openai_types.ChatCompletion",
    "maas.protocol.openai_types.ChatCompletionChunk",
    "maas.service.job_layout.JobStatus",
)
FUNCTIONS = sorted(path.parent.name for path in ROOT.glob("functions/*/app.py"))


def imported_fresh(function: str) -> dict[str, Any]:
    """sys.modules after importing the function, and whether each named wire type it imported is built."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(ROOT / "functions" / function / "app.py"),
            json.dumps([*BUILT_ON_FIRST_USE, *BUILT_AT_IMPORT]),
        ],
        capture_output=True,
        text=True,
        check=True,
        # This checkout's maas, whichever one the virtual environment was installed from.
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT / "shared"),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
        cwd=ROOT,
    )
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module", params=FUNCTIONS)
def started(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, imported_fresh(request.param)


def test_every_function_is_probed() -> None:
    assert set(NOT_IMPORTED) <= set(FUNCTIONS)
    assert {"infer", "generate"} <= set(FUNCTIONS)


def test_a_function_leaves_what_its_first_request_does_not_need_unimported(
    started: tuple[str, dict[str, Any]],
) -> None:
    function, report = started
    modules = set(report["modules"])
    assert "maas.protocol" in modules  # the probe really imported maas
    unneeded = {**NOT_IMPORTED.get(function, {}), **dict.fromkeys(EXPLAINER, "imported by the first explain")}
    imported = {
        name: why
        for name, why in unneeded.items()
        if any(module == name or module.startswith(name + ".") for module in modules)
    }
    assert imported == {}


def test_a_function_builds_only_the_wire_types_its_first_request_uses(
    started: tuple[str, dict[str, Any]],
) -> None:
    function, report = started
    built: dict[str, bool] = report["built"]
    assert {name for name in BUILT_ON_FIRST_USE if built.get(name)} == set()
    assert {name for name in BUILT_AT_IMPORT if built.get(name) is False} == set()
    # Every function validates a manifest on its first request, so each imports some of the named types.
    assert built, f"{function}: expected some of the named wire types imported"
