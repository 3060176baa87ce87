"""Export and checks: what the pipeline guarantees about every model it hands to the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from maas.registry import Signature, TensorSpec
from maas.training import ModelCheckFailed, TrainedModel, check_onnx, measure_parity, open_session

EXPECTED_SIGNATURE = Signature(
    inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 10])],
    outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1, 10])],
)


def test_parity_passes_and_records_the_measured_difference(seed_model: TrainedModel) -> None:
    parity = seed_model.draft.parity

    assert parity is not None
    assert parity.passed
    assert 0.0 <= parity.max_abs_diff < 1e-4
    assert parity.tolerance == 1e-4
    assert parity.samples == len(seed_model.test_inputs["input"]) > 0


def test_exported_model_passes_the_onnx_checker(seed_model: TrainedModel) -> None:
    assert set(seed_model.files) == {
        "model.onnx",
        "card.md",
        "loss.png",
        "metric.png",
        "feature_importance.png",
    }

    onnx.checker.check_model(onnx.load_from_string(seed_model.files["model.onnx"]))
    check_onnx(seed_model.files)


def test_checker_rejects_bytes_that_are_not_a_model() -> None:
    with pytest.raises(ModelCheckFailed, match=r"onnx\.checker"):
        check_onnx({"model.onnx": b"not a protobuf"})


def test_signature_is_read_from_the_onnx_graph(seed_model: TrainedModel) -> None:
    assert seed_model.draft.signature == EXPECTED_SIGNATURE
    assert seed_model.test_inputs["input"].dtype == np.float32
    assert seed_model.test_inputs["input"].shape[1] == 10


def test_predict_is_the_torch_reference_for_any_batch_size(seed_model: TrainedModel) -> None:
    session = open_session(seed_model.files)

    for batch in (seed_model.test_inputs["input"][:1], seed_model.test_inputs["input"][:7]):
        expected = seed_model.predict(batch)
        got = session.run(None, {"input": batch})[0]
        assert expected.dtype == np.float32
        assert expected.shape == (len(batch), 10)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_parity_fails_when_onnx_is_not_the_same_model(
    seed_model: TrainedModel, other_seed_model: TrainedModel
) -> None:
    parity = measure_parity(
        seed_model.module, open_session(other_seed_model.files), seed_model.test_inputs, tolerance=1e-4
    )

    assert not parity.passed
    assert parity.max_abs_diff > 1e-4


def test_external_data_variant_loads_from_a_directory_and_matches_torch(
    external_data_model: TrainedModel, tmp_path: Path
) -> None:
    assert {"model.onnx", "model.onnx.data"} <= set(external_data_model.files)
    for name, data in external_data_model.files.items():
        (tmp_path / name).write_bytes(data)

    onnx.checker.check_model(str(tmp_path / "model.onnx"))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, external_data_model.test_inputs)[0]

    np.testing.assert_allclose(
        got, external_data_model.predict(external_data_model.test_inputs["input"]), atol=1e-4, rtol=0
    )
    assert external_data_model.draft.signature == EXPECTED_SIGNATURE
    parity = external_data_model.draft.parity
    assert parity is not None and parity.passed


def test_external_data_model_file_alone_does_not_hold_the_weights(external_data_model: TrainedModel) -> None:
    proto = onnx.load_from_string(external_data_model.files["model.onnx"])

    assert any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)
