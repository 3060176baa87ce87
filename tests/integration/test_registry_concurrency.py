"""The registry under real concurrency: many threads against a moto server over HTTP, as many Lambda
containers or CI jobs would hit S3 at once."""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import numpy as np
import pytest
from botocore.config import Config

from maas.config import Settings
from maas.errors import MaasError
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import CanarySplit, ModelRef, ModelRegistry
from maas.registry.admin import RegistryAdmin
from maas.registry.store import VersionConflict
from maas.service.inference import InferenceService, choose_version
from tests.support.aws import moto_server
from tests.support.registry import DRAFT, graph

if TYPE_CHECKING:
    from maas.training import TrainedModel

THREADS = 16
ROUNDS = 4


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    # The served store makes conditional writes atomic, as S3 does (maas.local.store_requests).
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def registry(moto_endpoint: str, request: pytest.FixtureRequest) -> ModelRegistry:
    # A valid S3 name (no trailing '-', which S3 refuses though moto does not), one per test and per case.
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"race-{stem}-{uuid.uuid4().hex[:8]}"
    s3: Any = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # One pooled connection per thread: with botocore's default of 10, sixteen threads keep opening and
        # dropping connections, and on a busy machine the local server can refuse one, which reads as a
        # lost race instead of the VersionConflict under test.
        config=Config(max_pool_connections=THREADS * 2),
    )
    s3.create_bucket(Bucket=bucket)
    return ModelRegistry(s3, bucket)


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Start `count` threads at the same instant; return each one's result or exception."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def runner(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_sixteen_concurrent_publishes_get_sixteen_consecutive_versions(registry: ModelRegistry) -> None:
    payloads = [graph(f"graph-{i}".encode()) for i in range(THREADS)]
    manifests = run_together(THREADS, lambda i: registry.publish("m", {"model.onnx": payloads[i]}, DRAFT))

    assert not [m for m in manifests if isinstance(m, Exception)]
    assert sorted(m.version for m in manifests) == list(range(1, THREADS + 1))
    for manifest in manifests:
        # Nothing was overwritten: every version still holds exactly what its publisher wrote.
        index = next(i for i, m in enumerate(manifests) if m is manifest)
        stored = registry.read_artifact(manifest, manifest.artifact("model.onnx"))
        assert stored == payloads[index]


def test_publishers_racing_a_delete_of_the_highest_version_never_take_its_number(
    registry: ModelRegistry,
) -> None:
    for i in range(4):
        registry.publish("m", {"model.onnx": graph(f"before-{i}".encode())}, DRAFT)
    admin = RegistryAdmin(registry)

    def work(index: int) -> Any:
        if index == 0:
            return admin.delete_version("m", 4)
        return registry.publish("m", {"model.onnx": graph(f"after-{index}".encode())}, DRAFT)

    outcomes = run_together(THREADS, work)

    assert not [o for o in outcomes if isinstance(o, Exception)]
    published = sorted(m.version for m in outcomes[1:])
    assert published == list(range(5, 5 + THREADS - 1))
    assert registry.versions("m") == [1, 2, 3, *published]


def test_a_warm_server_stops_serving_a_deleted_version_within_the_ttl_and_never_sees_its_number_again(
    registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    from maas.training import publish_trained

    for _ in range(5):
        publish_trained(seed_model, registry)
    ttl = 0.3
    service = InferenceService(
        registry, Settings(bucket=registry.bucket, provider="cpu", alias_ttl_seconds=ttl)
    )
    request = InferenceRequest(inputs=[Tensor("input", "FP32", seed_model.test_inputs["input"][:1])])
    fifth = ModelRef("seed-mlp", version=5)
    assert service.infer(fifth, request).model_version == 5

    RegistryAdmin(registry).delete_version("seed-mlp", 5)
    sixth = publish_trained(seed_model, registry)
    time.sleep(ttl * 1.5)

    assert sixth.version == 6
    with pytest.raises(MaasError) as gone:
        service.infer(fifth, request)
    assert gone.value.status == 404
    assert ("seed-mlp", 5) not in service.cache.loaded_keys()
    assert service.infer(ModelRef("seed-mlp"), request).model_version == 6


def test_racing_alias_moves_have_one_winner_per_round_and_a_consistent_history(
    registry: ModelRegistry,
) -> None:
    for i in range(THREADS + 1):
        registry.publish("m", {"model.onnx": graph(f"g{i}".encode())}, DRAFT)
    admin = RegistryAdmin(registry)
    admin.set_alias("m", "production", 1)
    expected_history: list[tuple[int | None, int]] = [(None, 1)]
    for _ in range(ROUNDS):
        current = registry.alias_document("m", "production")
        assert current is not None
        start = current.document.version
        # Every target differs from the start: a move to the current version leaves the version number
        # unchanged, so a writer expecting it could then succeed after it and the round would have two.
        targets = [version for version in range(1, THREADS + 2) if version != start]
        outcomes = run_together(
            THREADS,
            lambda i, start=start, targets=targets: admin.set_alias(  # type: ignore[misc]
                "m", "production", targets[i], expected_version=start, by=f"worker-{i}"
            ),
        )
        winners = [o for o in outcomes if not isinstance(o, Exception)]
        losers = [o for o in outcomes if isinstance(o, Exception)]
        assert len(winners) == 1
        assert all(isinstance(o, VersionConflict) for o in losers)
        expected_history.append((start, winners[0].version))
        stored = registry.alias_document("m", "production")
        assert stored is not None and stored.document.version == winners[0].version
        assert [(h.from_version, h.to_version) for h in stored.document.history] == expected_history


def test_unconditional_concurrent_moves_are_never_lost(registry: ModelRegistry) -> None:
    for i in range(4):
        registry.publish("m", {"model.onnx": graph(f"g{i}".encode())}, DRAFT)
    admin = RegistryAdmin(registry)
    outcomes = run_together(8, lambda i: admin.set_alias("m", "staging", i % 4 + 1, by=f"w{i}"))
    assert not [o for o in outcomes if isinstance(o, Exception)]
    stored = registry.alias_document("m", "staging")
    assert stored is not None
    # Every move was applied on top of the one before it, so the history has all eight, chained.
    history = stored.document.history
    assert sorted(h.by or "" for h in history) == sorted(f"w{i}" for i in range(8))
    assert all(later.from_version == earlier.to_version for earlier, later in itertools.pairwise(history))


def test_warm_serving_follows_promotion_and_rollback_within_the_ttl(
    registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    from maas.training import publish_trained

    first, second = publish_trained(seed_model, registry), publish_trained(seed_model, registry)
    admin = RegistryAdmin(registry)
    admin.promote("seed-mlp", first.version)
    ttl = 0.3
    service = InferenceService(
        registry, Settings(bucket=registry.bucket, provider="cpu", alias_ttl_seconds=ttl)
    )
    request = InferenceRequest(inputs=[Tensor("input", "FP32", seed_model.test_inputs["input"][:1])])

    def served() -> int:
        return service.infer(ModelRef("seed-mlp"), request).model_version

    assert served() == first.version
    admin.promote("seed-mlp", second.version, force=True, reason="same metrics")
    time.sleep(ttl * 1.5)
    assert served() == second.version
    admin.rollback("seed-mlp", "production")
    time.sleep(ttl * 1.5)
    assert served() == first.version
    # Pinned versions were loaded once each and stay cached.
    assert service.cache.loads == 2


def test_a_canary_split_routes_by_key_deterministically_and_by_share_at_random() -> None:
    from maas.registry import ResolvedTarget

    target = ResolvedTarget(version=1, canary=CanarySplit(version=2, weight=0.25))
    assert all(choose_version(target, "caller-7") == choose_version(target, "caller-7") for _ in range(20))
    by_key = Counter(choose_version(target, f"caller-{i}") for i in range(4000))
    assert 0.2 < by_key[2] / 4000 < 0.3
    at_random = Counter(choose_version(target) for _ in range(4000))
    assert 0.2 < at_random[2] / 4000 < 0.3
    assert choose_version(ResolvedTarget(version=5)) == 5


def test_the_response_says_which_side_of_the_canary_answered(
    registry: ModelRegistry, seed_model: TrainedModel
) -> None:
    from maas.training import publish_trained

    publish_trained(seed_model, registry)
    publish_trained(seed_model, registry)
    RegistryAdmin(registry).set_alias("seed-mlp", "production", 1, canary=CanarySplit(version=2, weight=0.5))
    service = InferenceService(registry, Settings(bucket=registry.bucket, provider="cpu"))
    rows = seed_model.test_inputs["input"][:1]
    seen = {
        service.infer(
            ModelRef("seed-mlp"),
            InferenceRequest(inputs=[Tensor("input", "FP32", rows)], parameters={"routing_key": f"user-{i}"}),
        ).model_version
        for i in range(40)
    }
    assert seen == {1, 2}
    np.testing.assert_allclose(
        service.infer(ModelRef("seed-mlp"), InferenceRequest(inputs=[Tensor("input", "FP32", rows)]))
        .outputs[0]
        .array,
        seed_model.predict(rows),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("reference", "error_status"),
    [("seed-mlp@nope", 404), ("seed-mlp/versions/x!", 400), ("../x", 400), ("", 400), ("Seed MLP", 400)],
)
def test_bad_references_are_400_or_404_with_a_clear_message(
    registry: ModelRegistry, seed_model: TrainedModel, reference: str, error_status: int
) -> None:
    from maas.registry import parse_ref
    from maas.training import publish_trained

    publish_trained(seed_model, registry)
    with pytest.raises(MaasError) as caught:
        registry.resolve(parse_ref(reference))
    assert caught.value.status == error_status
    assert "expected" in caught.value.message or "not set" in caught.value.message


def test_v1_predict_follows_the_canary_split_too(registry: ModelRegistry, seed_model: TrainedModel) -> None:

    from maas.apps.infer import infer_http_app
    from maas.training import publish_trained
    from tests.support.events import json_event

    publish_trained(seed_model, registry)
    publish_trained(seed_model, registry)
    RegistryAdmin(registry).set_alias("seed-mlp", "production", 1, canary=CanarySplit(version=2, weight=0.5))
    app = infer_http_app(InferenceService(registry, Settings(bucket=registry.bucket, provider="cpu")))
    seen = set()
    for i in range(30):
        event = json_event(
            "POST",
            "/v1/models/seed-mlp:predict",
            {"instances": seed_model.test_inputs["input"][:1].tolist()},
            headers={"x-maas-routing-key": f"user-{i}"},
        )
        response = app.resolve(event, None)
        assert response["statusCode"] == 200
        seen.add(response["headers"]["x-maas-model-version"])
    assert seen == {"1", "2"}
