"""Dynamic int8 quantization: a real int8 graph, its metric measured on the same test set, and a gate."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
import pytest

from maas.registry import ModelRegistry
from maas.training import QuantizationRefused, TrainedModel, open_session, publish_trained
from maas.training.export import onnx_outputs
from maas.training.quantize import quantize_trained, with_base_version


@pytest.fixture(scope="module")
def int8_seed(seed_model: TrainedModel) -> TrainedModel:
    # The seed MLP's int8 is slower than its fp32 (test_int8_speed): the speed gate is off here, so these
    # tests see the metric gate alone.
    return quantize_trained(seed_model, max_degradation=0.05, min_speedup=0)


def test_int8_graph_has_integer_weights_and_its_own_measured_metric(
    seed_model: TrainedModel, int8_seed: TrainedModel
) -> None:
    proto = onnx.load_from_string(int8_seed.files["model.onnx"])
    quantization = int8_seed.draft.quantization

    assert any(init.data_type == onnx.TensorProto.INT8 for init in proto.graph.initializer)
    assert quantization is not None and quantization.metric == "mse"
    assert quantization.fp32_value == seed_model.draft.metrics["mse"]
    # The recorded int8 metric is what the int8 graph really scores on the test set.
    served = onnx_outputs(open_session(int8_seed.files), seed_model.test_inputs)[0]
    targets = seed_model.fit.test_targets
    assert targets is not None
    mse = float(np.mean((served.astype(np.float64) - targets.astype(np.float64)) ** 2))
    assert quantization.quantized_value == pytest.approx(mse, rel=1e-6)
    assert quantization.delta == pytest.approx(mse - quantization.fp32_value)
    assert int8_seed.draft.metrics["mse"] == pytest.approx(mse, rel=1e-6)
    assert int8_seed.draft.parity is None
    assert int8_seed.draft.params["quantization"] == "int8-dynamic"
    assert int8_seed.draft.signature == seed_model.draft.signature


def test_int8_version_is_published_after_fp32_and_names_its_base(
    seed_model: TrainedModel, int8_seed: TrainedModel, registry: ModelRegistry
) -> None:
    fp32 = publish_trained(seed_model, registry)
    int8 = publish_trained(with_base_version(int8_seed, fp32.version), registry)

    assert (fp32.version, int8.version) == (1, 2)
    assert int8.quantization is not None and int8.quantization.base_version == 1
    card = registry.read_artifact(int8, int8.artifact("card.md")).decode()
    assert "int8" in card.lower()
    assert len(int8_seed.files["model.onnx"]) < len(seed_model.files["model.onnx"])


def test_int8_importance_is_measured_on_the_int8_graph_and_the_training_means_carry_over(
    seed_model: TrainedModel, int8_seed: TrainedModel
) -> None:
    fp32, int8 = seed_model.draft, int8_seed.draft
    assert fp32.feature_importance is not None and int8.feature_importance is not None

    assert int8.feature_importance.baseline_value == int8.metrics["mse"] != fp32.metrics["mse"]
    assert int8.feature_importance != fp32.feature_importance
    assert {item.feature for item in int8.feature_importance.features} == {
        item.feature for item in fp32.feature_importance.features
    }
    assert int8.input_means == fp32.input_means and len(int8.input_means["input"]) == 10
    assert "feature_importance.png" in int8_seed.files


@pytest.mark.parametrize(
    ("fp32", "int8", "goal", "allowed"),
    [
        (0.10, 0.12, "minimize", 0.01),  # mse rose by 0.02
        (0.98, 0.95, "maximize", 0.01),  # accuracy fell by 0.03
    ],
)
def test_publishing_refuses_an_int8_model_past_the_threshold(
    int8_seed: TrainedModel,
    registry: ModelRegistry,
    s3: Any,
    fp32: float,
    int8: float,
    goal: str,
    allowed: float,
) -> None:
    assert int8_seed.draft.quantization is not None
    quantization = int8_seed.draft.quantization.model_copy(
        update={"fp32_value": fp32, "quantized_value": int8, "delta": int8 - fp32, "max_degradation": allowed}
    )
    draft = int8_seed.draft.model_copy(update={"quantization": quantization, "primary_metric_goal": goal})
    refused = dataclasses.replace(int8_seed, draft=draft)

    with pytest.raises(QuantizationRefused, match=f"degrade by at most {allowed:g}") as raised:
        publish_trained(refused, registry)

    assert raised.value.status == 422
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0


def test_an_improvement_is_never_refused(int8_seed: TrainedModel, registry: ModelRegistry) -> None:
    assert int8_seed.draft.quantization is not None
    better = int8_seed.draft.quantization.model_copy(
        update={"fp32_value": 0.2, "quantized_value": 0.1, "delta": -0.1, "max_degradation": 0.0}
    )
    draft = int8_seed.draft.model_copy(update={"quantization": better})

    manifest = publish_trained(dataclasses.replace(int8_seed, draft=draft), registry)

    assert manifest.quantization == better
