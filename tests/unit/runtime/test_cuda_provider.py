"""MAAS_PROVIDER=cuda on a host whose onnxruntime offers CUDA (onnxruntime-gpu on an NVIDIA machine).

Skipped elsewhere. On such a host:
    make test PYTEST_ARGS=tests/unit/runtime/test_cuda_provider.py
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest

from maas.config import Settings
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import Manifest, ModelRef, ModelRegistry
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET

if TYPE_CHECKING:
    from maas.training import TrainedModel

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="onnxruntime offers no CUDAExecutionProvider here (needs onnxruntime-gpu and an NVIDIA GPU)",
)


@pytest.mark.parametrize("setting", ["cuda", "auto"])
def test_cuda_sessions_answer_like_cpu_ones(
    registry: ModelRegistry, published_seed: Manifest, seed_model: TrainedModel, setting: str
) -> None:
    rows = seed_model.test_inputs["input"][:32]
    request = InferenceRequest(inputs=[Tensor("input", "FP32", rows)])
    gpu = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider=setting))  # type: ignore[arg-type]
    cpu = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))

    on_gpu = gpu.infer(ModelRef("seed-mlp"), request).outputs[0].array
    on_cpu = cpu.infer(ModelRef("seed-mlp"), request).outputs[0].array

    loaded = gpu.cache.peek("seed-mlp", published_seed.version)
    assert loaded is not None and loaded.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    np.testing.assert_allclose(on_gpu, seed_model.predict(rows), atol=1e-4)
