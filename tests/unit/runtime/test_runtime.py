from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from maas.config import Settings
from maas.errors import IntegrityError, InvalidInput, NotFound, Unavailable
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import Manifest, ModelRef, ModelRegistry, Signature, TensorSpec
from maas.registry.admin import RegistryAdmin
from maas.runtime import (
    SessionConfig,
    VersionResolver,
    check_inputs,
    check_requested_outputs,
    load_model,
    select_providers,
)
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET
from tests.support.external_data import CHAIN_WIDTH, matmul_chain_model
from tests.support.registry import publish

if TYPE_CHECKING:
    from maas.training import TrainedModel

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def request_for(inputs: np.ndarray) -> InferenceRequest:
    return InferenceRequest(inputs=[Tensor("input", "FP32", inputs.astype(np.float32))])


@pytest.mark.parametrize(
    ("setting", "available", "expected"),
    [
        ("cpu", [CUDA, CPU], [CPU]),
        ("auto", [CPU], [CPU]),
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
    ],
)
def test_provider_selection(setting: Any, available: list[str], expected: list[str]) -> None:
    assert select_providers(setting, available) == expected


def test_cuda_without_cuda_is_a_clear_error_not_a_silent_fallback() -> None:
    with pytest.raises(
        Unavailable, match="MAAS_PROVIDER=cuda: expected onnxruntime to offer CUDAExecutionProvider"
    ):
        select_providers("cuda", [CPU])


def test_cuda_setting_on_this_cpu_host_fails_the_request_with_503(
    registry: ModelRegistry, published_seed: Manifest, seed_model: TrainedModel
) -> None:
    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cuda"))
    with pytest.raises(Unavailable) as caught:
        service.infer(ModelRef("seed-mlp"), request_for(seed_model.test_inputs["input"][:2]))
    assert caught.value.status == 503


def test_a_session_that_fell_back_from_the_required_provider_is_refused(
    registry: ModelRegistry, published_seed: Manifest
) -> None:
    """onnxruntime-gpu opens a CUDA-first session on the CPU when the GPU is unusable, with only a warning;
    MAAS_PROVIDER=cuda turns that into an error. On this CPU host a CPU-only session stands in for it."""
    config = SessionConfig(providers=("CPUExecutionProvider",), required_provider="CUDAExecutionProvider")
    with pytest.raises(
        Unavailable,
        match=r"expected a session on CUDAExecutionProvider .*got one on \['CPUExecutionProvider'\]",
    ):
        load_model(registry, published_seed, config)


def test_inference_matches_torch_and_loads_lazily_once(
    service: InferenceService, published_seed: Manifest, seed_model: TrainedModel
) -> None:
    assert service.cache.loaded_keys() == []
    rows = seed_model.test_inputs["input"][:5]
    response = service.infer(ModelRef("seed-mlp"), request_for(rows))
    assert response.model_version == published_seed.version
    np.testing.assert_allclose(response.outputs[0].array, seed_model.predict(rows), atol=1e-5)
    service.infer(ModelRef("seed-mlp", version=1), request_for(rows))
    assert service.cache.loads == 1


def test_concurrent_first_requests_load_the_model_once(
    service: InferenceService, published_seed: Manifest, seed_model: TrainedModel
) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            service.infer(ModelRef("seed-mlp", version=1), request_for(seed_model.test_inputs["input"][:1]))
        except BaseException as exc:  # pragma: no cover - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.cache.loads == 1


def test_cache_evicts_least_recently_used_models_past_its_byte_budget(registry: ModelRegistry) -> None:
    # Models of a few MiB: what a load measurably adds (its prepacked weights) is about their size, well
    # inside the 2.5 models' worth the budget holds; a model of kilobytes measures mostly noise.
    files, draft = matmul_chain_model(4)
    size = max(registry.publish("chain", files, draft).total_bytes for _ in range(3))
    service = InferenceService(
        registry, Settings(bucket=TEST_BUCKET, provider="cpu", cache_bytes=int(size * 2.5))
    )
    rows = InferenceRequest(inputs=[Tensor("x", "FP32", np.ones((1, CHAIN_WIDTH), np.float32))])
    for version in (1, 2, 1, 3):
        service.infer(ModelRef("chain", version=version), rows)
    assert service.cache.loaded_keys() == [("chain", 1), ("chain", 3)]
    assert service.cache.loads == 3


def test_aliases_are_re_resolved_only_after_their_ttl(
    registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    from maas.training import publish_trained

    publish_trained(seed_model, registry)
    publish_trained(seed_model, registry)
    now = [0.0]
    resolver = VersionResolver(registry.resolve_target, ttl_seconds=30, clock=lambda: now[0])
    admin = RegistryAdmin(registry)
    admin.set_alias("seed-mlp", "production", 1)
    assert resolver.resolve(ModelRef("seed-mlp")).version == 1
    admin.set_alias("seed-mlp", "production", 2, expected_version=1)
    now[0] = 29.0
    assert resolver.resolve(ModelRef("seed-mlp")).version == 1
    now[0] = 31.0
    assert resolver.resolve(ModelRef("seed-mlp")).version == 2


class StorageCalls:
    """The S3 operations a client makes, as botocore announces them (and, when told, a network failure)."""

    def __init__(self, s3: Any) -> None:
        self.names: list[str] = []
        self.unreachable = False
        s3.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)
        if self.unreachable:
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


def test_a_pinned_version_is_re_checked_after_the_ttl_and_forgotten_once_deleted(
    registry: ModelRegistry, s3: Any
) -> None:
    for _ in range(2):
        publish(registry)
    now = [0.0]
    forgotten: list[tuple[str, int]] = []
    resolver = VersionResolver(
        registry.resolve_target,
        ttl_seconds=30,
        clock=lambda: now[0],
        forget=lambda name, version: forgotten.append((name, version)),
    )
    calls = StorageCalls(s3)
    pinned = ModelRef("m", version=2)

    assert resolver.resolve(pinned).version == 2
    # Its manifest, which the load that follows takes instead of reading it again (no HEAD before it).
    assert calls.take() == ["GetObject"]
    # The warm path: within the TTL, no request reaches storage, even once the version is deleted.
    RegistryAdmin(registry).delete_version("m", 2)
    calls.take()
    for now[0] in (1.0, 15.0, 29.9):
        assert resolver.resolve(pinned).version == 2
    assert calls.take() == []
    assert forgotten == []

    now[0] = 30.1
    with pytest.raises(NotFound, match="model 'm' version 2: not found"):
        resolver.resolve(pinned)
    assert calls.take() == ["GetObject"]
    assert forgotten == [("m", 2)]
    # The miss is remembered for the negative TTL, then asked again.
    now[0] = 34.0
    with pytest.raises(NotFound):
        resolver.resolve(pinned)
    assert calls.take() == []
    now[0] = 35.2
    with pytest.raises(NotFound):
        resolver.resolve(pinned)
    assert calls.take() == ["GetObject"]


def test_a_pinned_version_still_serves_when_storage_fails_its_re_check(
    registry: ModelRegistry, s3: Any
) -> None:
    publish(registry)
    now = [0.0]
    resolver = VersionResolver(registry.resolve_target, ttl_seconds=30, clock=lambda: now[0])
    calls = StorageCalls(s3)
    pinned, latest = ModelRef("m", version=1), ModelRef("m", alias="latest")
    assert resolver.resolve(pinned).version == 1
    assert resolver.resolve(latest).version == 1

    calls.unreachable = True
    now[0] = 31.0
    # Only a delete could change a pinned answer, and nobody deletes through an outage; a movable
    # reference has no such guarantee, so it fails as before.
    assert resolver.resolve(pinned).version == 1
    with pytest.raises(Unavailable, match="storage unreachable"):
        resolver.resolve(latest)
    calls.take()
    # Retried after the negative TTL, not on every request.
    now[0] = 35.0
    assert resolver.resolve(pinned).version == 1
    assert calls.take() == []
    now[0] = 36.5
    assert resolver.resolve(pinned).version == 1
    assert calls.take() != []


def test_a_warm_service_answers_404_for_a_deleted_version_and_drops_it(
    registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    from maas.training import publish_trained

    for _ in range(2):
        publish_trained(seed_model, registry)
    # A TTL of 0: every request re-checks, so this test needs no clock.
    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu", alias_ttl_seconds=0))
    rows = request_for(seed_model.test_inputs["input"][:1])
    assert service.infer(ModelRef("seed-mlp", version=2), rows).model_version == 2
    assert service.cache.loaded_keys() == [("seed-mlp", 2)]

    RegistryAdmin(registry).delete_version("seed-mlp", 2)

    for ask in (
        lambda: service.infer(ModelRef("seed-mlp", version=2), rows),
        lambda: service.model_metadata(ModelRef("seed-mlp", version=2)),
        lambda: service.model_ready(ModelRef("seed-mlp", version=2)),
    ):
        with pytest.raises(NotFound, match="model 'seed-mlp' version 2: not found"):
            ask()
    assert service.cache.loaded_keys() == []
    # The next publish is version 3, never a second version 2.
    assert publish_trained(seed_model, registry).version == 3
    assert service.infer(ModelRef("seed-mlp", version=3), rows).model_version == 3
    assert service.infer(ModelRef("seed-mlp"), rows).model_version == 3


def test_a_tampered_model_is_refused_before_onnxruntime_opens_it(
    service: InferenceService, published_seed: Manifest, s3: Any, seed_model: TrainedModel
) -> None:
    key = f"models/seed-mlp/versions/{published_seed.version}/model.onnx"
    tampered = bytearray(s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read())
    tampered[-1] ^= 0xFF
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=bytes(tampered))
    with pytest.raises(IntegrityError, match="expected the sha256 and size in its manifest"):
        service.infer(ModelRef("seed-mlp"), request_for(seed_model.test_inputs["input"][:1]))
    assert service.cache.loaded_keys() == []


def test_a_manifest_whose_signature_disagrees_with_the_graph_is_refused(
    registry: ModelRegistry, service: InferenceService, seed_model: TrainedModel
) -> None:
    wrong = seed_model.draft.model_copy(
        update={
            "signature": Signature(
                inputs=[TensorSpec(name="features", datatype="FP32", shape=[-1, 10])],
                outputs=seed_model.draft.signature.outputs,
            )
        }
    )
    registry.publish("liar", seed_model.files, wrong)
    with pytest.raises(IntegrityError, match=r"manifest\.json inputs"):
        service.model_ready(ModelRef("liar"))


def test_external_data_models_load_from_their_verified_files(
    registry: ModelRegistry, service: InferenceService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maas.training import publish_trained, train_recipe

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    trained = train_recipe("seed-mlp", {"epochs": 1, "external_data": True})
    assert trained.draft.model_data_files == ["model.onnx.data"]
    publish_trained(trained, registry, name="seed-external")
    rows = trained.test_inputs["input"][:4]
    response = service.infer(ModelRef("seed-external"), request_for(rows))
    np.testing.assert_allclose(response.outputs[0].array, trained.predict(rows), atol=1e-5)
    # The verified files lived only while the session opened.
    assert list(tmp_path.iterdir()) == []


def test_requested_outputs_select_and_order_the_response(
    service: InferenceService, published_seed: Manifest, seed_model: TrainedModel
) -> None:
    rows = seed_model.test_inputs["input"][:2]
    request = InferenceRequest(inputs=request_for(rows).inputs, outputs=["output"], id="x")
    response = service.infer(ModelRef("seed-mlp"), request)
    assert [t.name for t in response.outputs] == ["output"] and response.id == "x"


TWO_INPUTS = Signature(
    inputs=[
        TensorSpec(name="ids", datatype="INT64", shape=[-1, -1]),
        TensorSpec(name="mask", datatype="INT64", shape=[-1, -1]),
    ],
    outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 2])],
)


def int_tensor(name: str, shape: tuple[int, ...], datatype: str = "INT64") -> Tensor:
    return Tensor(name, datatype, np.zeros(shape, dtype=np.int64))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([int_tensor("ids", (1, 4))], "inputs: model 'm' expects inputs ['ids', 'mask'], missing ['mask']"),
        (
            [int_tensor("ids", (1, 4)), int_tensor("mask", (1, 4)), int_tensor("extra", (1,))],
            "got unknown input 'extra'",
        ),
        ([int_tensor("ids", (1, 4)), int_tensor("ids", (1, 4))], "got input 'ids' twice"),
        ([int_tensor("ids", (1, 4)), int_tensor("mask", (4,))], "input 'mask': expected shape [-1, -1]"),
        (
            [int_tensor("ids", (1, 4)), int_tensor("mask", (1, 4), "INT32")],
            "input 'mask': expected datatype INT64, got INT32",
        ),
    ],
)
def test_signature_checks_name_the_tensor_and_the_mismatch(inputs: list[Tensor], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_inputs("m", TWO_INPUTS, inputs)
    assert message in caught.value.message


def test_fixed_dimensions_must_match_and_dynamic_ones_may_vary(seed_model: TrainedModel) -> None:
    signature = seed_model.draft.signature
    check_inputs("m", signature, [Tensor("input", "FP32", np.zeros((7, 10), np.float32))])
    with pytest.raises(InvalidInput, match=r"expected shape \[-1, 10\] \(-1 = any size\), got \[7, 9\]"):
        check_inputs("m", signature, [Tensor("input", "FP32", np.zeros((7, 9), np.float32))])


def test_unknown_requested_outputs_are_rejected() -> None:
    assert check_requested_outputs("m", TWO_INPUTS, None) == ["logits"]
    with pytest.raises(InvalidInput, match="got unknown output 'probs'"):
        check_requested_outputs("m", TWO_INPUTS, ["probs"])


def test_cache_keeps_a_model_larger_than_its_whole_budget(
    registry: ModelRegistry, published_seed: Manifest, seed_model: TrainedModel
) -> None:
    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu", cache_bytes=1))
    for _ in range(2):
        service.infer(ModelRef("seed-mlp"), request_for(seed_model.test_inputs["input"][:1]))
    assert service.cache.loads == 1
