"""The EMF line maas prints is, to the byte, the document Powertools' own flush prints for its metrics."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest
from aws_lambda_powertools import Metrics

from maas.observability import METRICS_NAMESPACE, SERVICE_NAME, MetricUnit, metrics

# Powertools' own provider, over the same process-wide metric set.
POWERTOOLS = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)

SETS: dict[str, list[tuple[str, Any, float]]] = {
    "a warm inference": [
        ("InferenceMs", MetricUnit.Milliseconds, 0.123),
        ("RequestBytes", MetricUnit.Bytes, 286),
    ],
    "a cold one that failed": [
        ("ColdStart", MetricUnit.Count, 1),
        ("ModelLoadMs", "Milliseconds", 41.5),
        ("InferenceMs", MetricUnit.Milliseconds, 1e-7),
        ("RequestBytes", MetricUnit.Bytes, 286),
        ("Errors504", MetricUnit.Count, 1),
    ],
    "a metric twice": [("JobLines", MetricUnit.Count, 3), ("JobLines", MetricUnit.Count, 4.5)],
}


@pytest.fixture(autouse=True)
def no_metrics_left_over() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def flushed(flusher: Metrics, added: list[tuple[str, Any, float]]) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        for name, unit, value in added:
            flusher.add_metric(name=name, unit=unit, value=value)
        flusher.flush_metrics()
    return out.getvalue()


def without_timestamp(line: str) -> str:
    """The printed text, byte for byte, but for the clock."""
    assert isinstance(json.loads(line)["_aws"]["Timestamp"], int)
    return re.sub(r'"Timestamp":\d+', '"Timestamp":0', line)


@pytest.mark.parametrize("case", list(SETS))
def test_the_prebuilt_line_is_powertools_own(case: str) -> None:
    # Twice each: the first flush builds the template, the second prints from it.
    for _ in range(2):
        ours, theirs = flushed(metrics, SETS[case]), flushed(POWERTOOLS, SETS[case])
        assert ours.count("\n") == theirs.count("\n") == 1
        assert without_timestamp(ours) == without_timestamp(theirs)


def test_what_the_template_does_not_cover_is_flushed_by_powertools() -> None:
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=1.0)
    metrics.add_dimension(name="model", value="seed-mlp")
    out = io.StringIO()
    with redirect_stdout(out):
        metrics.flush_metrics()

    document = json.loads(out.getvalue())
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "service"]]
    assert document["model"] == "seed-mlp"
