"""Publishing: only checked models reach the registry, and what is read back is what was trained."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from maas.registry import ModelRegistry, parse_ref
from maas.training import (
    ParityCheckFailed,
    TrainedModel,
    measure_parity,
    open_session,
    publish_trained,
)


def test_publishing_refuses_a_model_whose_parity_failed(
    seed_model: TrainedModel, other_seed_model: TrainedModel, registry: ModelRegistry, s3: Any
) -> None:
    mismatched_files = other_seed_model.files
    parity = measure_parity(
        seed_model.module, open_session(mismatched_files), seed_model.test_inputs["input"], tolerance=1e-4
    )
    failing = dataclasses.replace(
        seed_model, files=mismatched_files, draft=seed_model.draft.model_copy(update={"parity": parity})
    )

    with pytest.raises(ParityCheckFailed) as raised:
        publish_trained(failing, registry)

    assert raised.value.status == 422
    assert "0.0001" in raised.value.message
    assert f"{parity.max_abs_diff:g}" in raised.value.message
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0


def test_publishing_refuses_a_model_without_a_parity_check(
    seed_model: TrainedModel, registry: ModelRegistry, s3: Any
) -> None:
    unchecked = dataclasses.replace(seed_model, draft=seed_model.draft.model_copy(update={"parity": None}))

    with pytest.raises(ParityCheckFailed, match="found none"):
        publish_trained(unchecked, registry)
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0


def test_published_manifest_round_trips(seed_model: TrainedModel, registry: ModelRegistry) -> None:
    published = publish_trained(seed_model, registry)

    manifest = registry.manifest("seed-mlp", registry.resolve(parse_ref("seed-mlp")))

    assert manifest == published
    assert (manifest.name, manifest.version, manifest.task) == ("seed-mlp", 1, "regression")
    [spec_in], [spec_out] = manifest.signature.inputs, manifest.signature.outputs
    assert (spec_in.name, spec_in.datatype, spec_in.shape) == ("input", "FP32", [-1, 10])
    assert (spec_out.name, spec_out.datatype, spec_out.shape) == ("output", "FP32", [-1, 10])
    report_files = ["card.md", "feature_importance.png", "loss.png", "metric.png"]
    assert [a.path for a in manifest.artifacts] == ["model.onnx", *report_files]
    assert manifest.report_files == report_files
    for artifact in manifest.artifacts:
        data = seed_model.files[artifact.path]
        assert artifact.sha256 == hashlib.sha256(data).hexdigest()
        assert registry.read_artifact(manifest, artifact) == data
    assert {"mse", "mae", "r2", "val_mse"} <= set(manifest.metrics)
    assert manifest.params["lr"] == 0.01
    assert manifest.params["epochs"] == 3
    assert manifest.lineage.recipe == "seed-mlp"
    assert manifest.lineage.seed == 0
    assert len(manifest.lineage.dataset_hash or "") == 64
    assert "torch" in manifest.lineage.packages
    assert manifest.parity == seed_model.draft.parity


def test_publishing_again_makes_a_new_version_under_the_given_name(
    seed_model: TrainedModel, registry: ModelRegistry
) -> None:
    first = publish_trained(seed_model, registry, name="regressor")
    second = publish_trained(seed_model, registry, name="regressor")

    assert (first.version, second.version) == (1, 2)
    assert registry.list_models() == ["regressor"]


def test_external_data_model_publishes_both_files(
    external_data_model: TrainedModel, registry: ModelRegistry
) -> None:
    manifest = publish_trained(external_data_model, registry)

    assert manifest.model_file == "model.onnx"
    assert manifest.graph_files == ["model.onnx", "model.onnx.data"]
    assert [a.path for a in manifest.artifacts][:1] == ["model.onnx"]
    assert "model.onnx.data" in [a.path for a in manifest.artifacts]
    for artifact in manifest.artifacts:
        assert registry.read_artifact(manifest, artifact) == external_data_model.files[artifact.path]
