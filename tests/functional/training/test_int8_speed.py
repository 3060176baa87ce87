"""The int8 speed gate: an int8 version not enough faster than fp32 on the recipe's benchmark input is
refused at publishing, with the measured numbers and how to override. No assertion depends on timing: the
decision is tested on given timings, and the real refusal on a threshold no int8 graph can meet."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from maas.errors import InvalidInput
from maas.registry import ModelRegistry
from maas.training import QuantizationRefused, TrainedModel, publish_trained
from maas.training.int8_speed import (
    DEFAULT_MIN_INT8_SPEEDUP,
    SPEEDUP,
    Int8Speed,
    benchmark_feeds,
    speed_refusal,
)
from maas.training.quantize import quantize_trained
from maas.training.run_config import parse_run_config

# No int8 graph runs a million times as fast as its fp32 one, whatever the machine is doing.
UNREACHABLE_SPEEDUP = 1e6


def speed(fp32_us: float, int8_us: float, *, minimum: float = DEFAULT_MIN_INT8_SPEEDUP) -> Int8Speed:
    return Int8Speed(
        fp32_us=fp32_us, int8_us=int8_us, speedup=fp32_us / int8_us, min_speedup=minimum, batch=1, pairs=21
    )


@pytest.mark.parametrize(("fp32_us", "int8_us"), [(100.0, 100.0), (8.8, 13.8), (100.0, 84.0)])
def test_an_int8_graph_below_the_threshold_is_refused_with_its_numbers(
    fp32_us: float, int8_us: float
) -> None:
    refusal = speed_refusal(speed(fp32_us, int8_us))

    assert refusal is not None
    assert f"at least {DEFAULT_MIN_INT8_SPEEDUP:g}x" in refusal
    assert f"got {fp32_us / int8_us:.2f}x" in refusal
    assert f"fp32 {fp32_us:.1f} us, int8 {int8_us:.1f} us" in refusal
    assert "batch 1" in refusal and "median of 21 interleaved pairs" in refusal
    assert "--min-int8-speedup" in refusal and "min_speedup" in refusal


@pytest.mark.parametrize(
    ("fp32_us", "int8_us", "minimum"), [(120.0, 100.0, 1.2), (260.0, 100.0, 1.2), (100.0, 400.0, 0.0)]
)
def test_an_int8_graph_at_or_past_the_threshold_passes(
    fp32_us: float, int8_us: float, minimum: float
) -> None:
    assert speed_refusal(speed(fp32_us, int8_us, minimum=minimum)) is None


def test_the_measurement_round_trips_through_the_drafts_params() -> None:
    measured = speed(250.0, 100.0)

    assert Int8Speed.from_params({"width": 8, **measured.as_params()}) == measured
    assert Int8Speed.from_params({"width": 8}) is None


def test_the_benchmark_input_is_the_first_rows_of_the_test_set(seed_model: TrainedModel) -> None:
    feeds = benchmark_feeds(seed_model.test_inputs, 3)

    for name, rows in feeds.items():
        assert rows.shape[0] == 3
        assert (rows == seed_model.test_inputs[name][:3]).all()


@pytest.fixture(scope="module")
def unreachable_int8(seed_model: TrainedModel) -> TrainedModel:
    return quantize_trained(seed_model, max_degradation=1.0, min_speedup=UNREACHABLE_SPEEDUP)


def test_quantizing_records_the_measured_speed_in_the_params(unreachable_int8: TrainedModel) -> None:
    measured = Int8Speed.from_params(unreachable_int8.draft.params)

    assert measured is not None
    assert measured.fp32_us > 0 and measured.int8_us > 0
    assert measured.min_speedup == UNREACHABLE_SPEEDUP and measured.batch == 1
    assert unreachable_int8.draft.params[SPEEDUP] == pytest.approx(measured.speedup)


def test_publishing_refuses_an_int8_version_that_is_not_fast_enough(
    unreachable_int8: TrainedModel, registry: ModelRegistry, s3: Any
) -> None:
    measured = Int8Speed.from_params(unreachable_int8.draft.params)
    assert measured is not None

    with pytest.raises(QuantizationRefused, match=re.escape(f"at least {UNREACHABLE_SPEEDUP:g}x")) as raised:
        publish_trained(unreachable_int8, registry)

    assert raised.value.status == 422
    assert f"fp32 {measured.fp32_us:.1f} us, int8 {measured.int8_us:.1f} us" in raised.value.message
    assert s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"] == 0


def test_the_same_draft_with_the_check_off_publishes(
    unreachable_int8: TrainedModel, registry: ModelRegistry
) -> None:
    params = {**unreachable_int8.draft.params, "int8_min_speedup": 0.0}
    draft = unreachable_int8.draft.model_copy(update={"params": params})

    manifest = publish_trained(dataclasses.replace(unreachable_int8, draft=draft), registry)

    assert manifest.params["int8_min_speedup"] == 0.0


def test_a_negative_threshold_is_refused_before_any_work(seed_model: TrainedModel) -> None:
    with pytest.raises(InvalidInput, match=re.escape("min_speedup: expected a number >= 0")):
        quantize_trained(seed_model, min_speedup=-1.0)


def test_the_run_config_takes_the_threshold() -> None:
    assert parse_run_config({"quantization": {"min_speedup": 1.5}}).min_speedup == 1.5
    assert parse_run_config({}).min_speedup is None
    with pytest.raises(InvalidInput, match=re.escape("quantization.min_speedup: expected a number >= 0")):
        parse_run_config({"quantization": {"min_speedup": "fast"}})
