"""The per-request time budget (MAAS_REQUEST_TIMEOUT): a run still going at its deadline is cut off.

Given a real graph that takes far longer than the budgets used here (a chain of 1024 x 1024 MatMuls, a few
hundred milliseconds on one core), published to moto and served by the real service, a run with a budget of
20 ms is stopped by onnxruntime's terminate flag and answered DeadlineExceeded (504), and the same model
answers normally with the budget off. Only outcomes are asserted, never wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from maas.config import Settings
from maas.errors import DeadlineExceeded
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import ModelRef, ModelRegistry
from maas.runtime.loaded_model import Deadline
from maas.service.inference import InferenceService
from tests.support.aws import TEST_BUCKET
from tests.support.models import SLOW_MODEL, SLOW_WIDTH, slow_chain_model

BUDGET_SECONDS = 0.02


def slow_request(value: float = 1.0) -> InferenceRequest:
    return InferenceRequest(inputs=[Tensor("x", "FP32", np.full((1, SLOW_WIDTH), value, dtype=np.float32))])


@pytest.fixture
def slow_registry(registry: ModelRegistry) -> ModelRegistry:
    registry.publish(SLOW_MODEL, *slow_chain_model())
    return registry


def service_with(registry: ModelRegistry, timeout: float) -> InferenceService:
    # One thread and no warm-up: the test pays for as few full runs as it can.
    settings = Settings(
        bucket=TEST_BUCKET, provider="cpu", warmup=False, intra_op_threads=1, request_timeout_seconds=timeout
    )
    return InferenceService(registry, settings)


def test_given_a_budget_shorter_than_the_run_then_it_is_cut_off_and_the_next_run_is_unaffected(
    slow_registry: ModelRegistry,
) -> None:
    service = service_with(slow_registry, BUDGET_SECONDS)
    service.cache.get(SLOW_MODEL, 1)  # loaded already, so the budget meets the run itself

    with pytest.raises(DeadlineExceeded) as raised:
        service.infer(ModelRef(SLOW_MODEL), slow_request())

    assert raised.value.status == 504
    assert raised.value.message == (
        f"model '{SLOW_MODEL}' v1: inference exceeded the time budget of {BUDGET_SECONDS:g} s "
        "(MAAS_REQUEST_TIMEOUT)"
    )

    # Then the next run of the session is unaffected by the terminated one.
    model = service.cache.get(SLOW_MODEL, 1)
    (answer,) = model.run({"x": slow_request(2.0).inputs[0].array}, ["y"])

    np.testing.assert_allclose(answer, [[2.0 * SLOW_WIDTH * SLOW_WIDTH]], rtol=1e-3)


def test_given_the_budget_off_then_the_same_model_answers(slow_registry: ModelRegistry) -> None:
    service = service_with(slow_registry, 0)

    response = service.infer(ModelRef(SLOW_MODEL), slow_request(0.5))

    assert response.outputs[0].array.shape == (1, 1)
    np.testing.assert_allclose(response.outputs[0].array, [[0.5 * SLOW_WIDTH * SLOW_WIDTH]], rtol=1e-3)


def test_given_the_function_has_less_time_left_than_the_budget_then_that_is_the_deadline(
    slow_registry: ModelRegistry,
) -> None:
    service = service_with(slow_registry, 25)

    # 1.02 s left, less the 1 s margin kept for answering: about 20 ms for the run.
    with pytest.raises(DeadlineExceeded) as raised:
        service.infer(ModelRef(SLOW_MODEL), slow_request(), remaining_ms=lambda: 1020)

    assert raised.value.message.startswith(f"model '{SLOW_MODEL}' v1: inference exceeded the ")
    assert raised.value.message.endswith(" s the function had left before its own timeout")


def test_given_a_deadline_already_past_then_the_run_does_not_start(slow_registry: ModelRegistry) -> None:
    model = service_with(slow_registry, 0).cache.get(SLOW_MODEL, 1)
    spent = Deadline(at=time.monotonic() - 1, budget="the time budget of 1 s (MAAS_REQUEST_TIMEOUT)")

    with pytest.raises(DeadlineExceeded, match="exceeded the time budget of 1 s"):
        model.run({"x": slow_request().inputs[0].array}, ["y"], deadline=spent)


# (MAAS_REQUEST_TIMEOUT, the function's remaining time in ms or None outside Lambda) -> the deadline's budget
DEADLINES: dict[tuple[float, int | None], str | None] = {
    (0, None): None,
    (25, None): "the time budget of 25 s (MAAS_REQUEST_TIMEOUT)",
    (0.5, None): "the time budget of 0.5 s (MAAS_REQUEST_TIMEOUT)",
    (25, 900_000): "the time budget of 25 s (MAAS_REQUEST_TIMEOUT)",
    (25, 10_000): "the 9 s the function had left before its own timeout",
    (0, 10_000): "the 9 s the function had left before its own timeout",
    (25, 1_250): "the 0.25 s the function had left before its own timeout",
    (25, 500): "the 0 s the function had left before its own timeout",
}


def remaining(ms: int | None) -> Callable[[], int] | None:
    return None if ms is None else lambda: ms


def test_the_deadline_is_the_budget_or_the_functions_remaining_time_whichever_is_sooner(
    registry: ModelRegistry,
) -> None:
    budgets = {}
    for timeout, remaining_ms in DEADLINES:
        deadline = service_with(registry, timeout).request_deadline(remaining(remaining_ms))
        budgets[timeout, remaining_ms] = deadline.budget if deadline is not None else None

    assert budgets == DEADLINES


def test_runs_that_finish_in_time_are_never_terminated(slow_registry: ModelRegistry) -> None:
    # Small and fast: many runs, each under a generous deadline, all answered; the watchdog forgets them.
    files, draft = slow_chain_model(width=8, layers=2)
    slow_registry.publish("quick-chain", files, draft)
    service = service_with(slow_registry, 60)

    for value in range(20):
        response = service.infer(ModelRef("quick-chain"), _quick_request(float(value)))
        np.testing.assert_allclose(response.outputs[0].array, [[value * 64.0]], rtol=1e-5)


def _quick_request(value: float) -> InferenceRequest:
    return InferenceRequest(inputs=[Tensor("x", "FP32", np.full((1, 8), value, dtype=np.float32))])
