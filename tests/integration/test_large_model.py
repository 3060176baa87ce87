"""Acceptance of models past protobuf's 2 GB line (issue 19), end to end on the local stack `make serve` runs.

The synthetic MatMul chain (41 fp32 MatMuls of 4096x4096, 2.75 GB of weights in model.onnx.data) is built
by maas.training.matmul_chain, published by `maas publish` into the stack's embedded store (streamed in
parts), and served over HTTP by the infer function, which downloads it with parallel ranged GETs and maps
its weights. Its answer must be exactly what onnxruntime computes on the same files with the session the
function opens (same weights held the same way: a prepacked session sums in another order).

One test, so a parallel run gives it one worker; it needs about 9 GB of disk while it runs (the build, the
store's copy, the function's download), all removed when it ends.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from maas.cli import main
from maas.local import LocalStack
from maas.registry.manifest import MODEL_FILE
from maas.runtime import usable_cpus
from maas.training.matmul_chain import DATA_FILE, INPUT_NAME, OUTPUT_NAME, build_matmul_chain
from maas.training.onnx_checks import DISABLE_PREPACKING

NAME = "matmul-chain"
PROTOBUF_LIMIT_BYTES = 2**31
# The template's largest memory and /tmp (MB), as a deployment serving this model would set them.
LARGE_MODEL_PARAMETERS = {"EphemeralStorageSize": "10240", "InferMemorySize": "10240"}


def onnxruntime_answer(model_path: Path, rows: np.ndarray) -> np.ndarray:
    """onnxruntime on the built files with the function's session options for a model this size."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cpus()
    options.add_session_config_entry(DISABLE_PREPACKING, "1")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    answer: np.ndarray = session.run(None, {INPUT_NAME: rows})[0]
    return answer


def infer_body(rows: np.ndarray) -> bytes:
    tensor = {
        "name": INPUT_NAME,
        "datatype": "FP32",
        "shape": list(rows.shape),
        "data": rows.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def test_a_model_past_2_gb_is_published_served_over_http_and_answers_as_onnxruntime(
    isolated_env: pytest.MonkeyPatch, http: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="maas-large-model-"))
    try:
        chain = build_matmul_chain(folder)
        assert chain.data_path.stat().st_size > PROTOBUF_LIMIT_BYTES
        rows = chain.sample_input(rows=2, seed=19)
        with LocalStack(port=0, embedded=True, parameters=LARGE_MODEL_PARAMETERS) as stack:
            assert main(["publish", str(chain.model_path), "--name", NAME]) == 0
            assert f"published {NAME} version 1" in capsys.readouterr().out
            manifest = stack.registry.manifest(NAME, 1)
            data = manifest.artifact(DATA_FILE)
            assert (data.bytes, manifest.model_data_files) == (chain.data_path.stat().st_size, [DATA_FILE])
            assert data.parts is not None  # uploaded, and downloaded, in verified parts

            result = http("POST", f"{stack.url}/v2/models/{NAME}/infer", infer_body(rows), "application/json")

        assert result.status == 200, result.body
        (output,) = result.json()["outputs"]
        assert (output["name"], output["datatype"], output["shape"]) == (
            OUTPUT_NAME,
            "FP32",
            [2, chain.width],
        )
        served = np.asarray(output["data"], dtype=np.float32).reshape(2, chain.width)
        expected = onnxruntime_answer(folder / MODEL_FILE, rows)
        assert np.all(np.isfinite(expected)) and np.abs(expected).max() > 0.1
        np.testing.assert_array_equal(served, expected)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
