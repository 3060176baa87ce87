"""The process's structured logger and EMF metrics. Log metadata (model, version, timings), never payload
values: not the event, not a tensor, not an exception's text (it can quote the payload; log its type).

There is deliberately no Powertools Tracer: X-Ray segments come from Lambda's active tracing alone, and
template.yaml still sets POWERTOOLS_TRACER_CAPTURE_RESPONSE/ERROR to false, so a Tracer added later cannot
put responses (outputs) or exception texts into traces. tests/functional/functions/test_privacy.py
holds this.

Metrics are Powertools' EMF documents, written faster: an invocation's flush prints one line whose fixed
part (namespace, dimensions, metric definitions) is built once per set of metric names and units, and a
metric already seen is added without Powertools' per-call validation. Anything beyond that common shape
(extra dimensions, metadata, a timestamp, high resolution, a value JSON cannot hold) is Powertools' own.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import defaultdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS
from aws_lambda_powertools.shared.constants import METRICS_DISABLED_ENV, POWERTOOLS_DEV_ENV

from maas.config import ENV_SERVICE_NAME

SERVICE_NAME = os.environ.get(ENV_SERVICE_NAME) or "maas"
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "maas"
STANDARD_RESOLUTION = 60
SERVICE_DIMENSION = "service"

_SERVICE_ONLY = frozenset({SERVICE_DIMENSION})
# Keys of the EMF document itself, which a metric's name cannot take in the template.
_RESERVED_KEYS = frozenset({SERVICE_DIMENSION, "_aws"})

# The (name, CloudWatch unit) of each metric in a flushed set, in order: the key of its template.
_Definitions = tuple[tuple[str, str], ...]


class EmfMetrics(Metrics):
    """Powertools' Metrics, with the flush of an invocation's usual metric set written from a template."""

    def __init__(self, *, namespace: str, service: str) -> None:
        super().__init__(namespace=namespace, service=service)
        self._namespace = namespace
        self._service = service
        # name -> (the unit as passed, CloudWatch's unit string), for pairs Powertools has validated once.
        self._units: dict[str, tuple[Any, str]] = {}
        self._templates: dict[_Definitions, tuple[str, str, tuple[str, ...]]] = {}

    def add_metric(
        self,
        name: str,
        unit: MetricUnit | str,
        value: float,
        resolution: MetricResolution | int = STANDARD_RESOLUTION,
    ) -> None:
        # Keyed by name alone: hashing a MetricUnit member runs Python code, comparing it does not.
        given, known = self._units.get(name, (None, None))
        metric = self.metric_set.get(name)
        if (
            known is None
            or (given is not unit and given != unit)
            or resolution != STANDARD_RESOLUTION
            or type(value) not in (int, float)
            # Powertools prints the set early at its limits of metrics and of values: its own code does.
            or len(self.metric_set) >= MAX_METRICS - 1
            or (metric is not None and len(metric["Value"]) >= MAX_METRICS - 1)
        ):
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)
            stored = self.metric_set.get(name)
            if stored is not None and resolution == STANDARD_RESOLUTION:
                self._units[name] = (unit, stored["Unit"])
            return
        # Exactly what Powertools stores, without re-validating a name and unit it has already accepted.
        if metric is None:
            metric = self.metric_set[name] = defaultdict(list)
        metric["Unit"] = known
        metric["StorageResolution"] = STANDARD_RESOLUTION
        metric["Value"].append(float(value))

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        line = self._templated_line() if self.metric_set else None
        if line is None or _may_be_disabled():
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
            return
        # print's bytes in one write rather than two.
        sys.stdout.write(f"{line}\n")
        self.clear_metrics()

    def _templated_line(self) -> str | None:
        """The EMF document Powertools would print for the current set, or None when the set has anything
        the template does not cover."""
        dimensions = self.dimension_set
        if (
            self.metadata_set
            or self.provider.dimension_sets
            or self.provider.timestamp is not None
            or not dimensions.keys() <= _SERVICE_ONLY
            or dimensions.get(SERVICE_DIMENSION, self._service) != self._service
        ):
            return None
        definitions: list[tuple[str, str]] = []
        values: list[str] = []
        for name, metric in self.metric_set.items():
            samples = metric.get("Value")
            if (
                name in _RESERVED_KEYS
                or metric.get("StorageResolution") != STANDARD_RESOLUTION
                or not samples
                # A sum overflows to infinity only if a sample is not finite or the samples are huge: the
                # latter go to Powertools too, which is merely slower.
                or not math.isfinite(sum(samples))
            ):
                return None
            definitions.append((name, metric.get("Unit", "")))
            values.append(f"[{','.join(map(float.__repr__, samples))}]")
        key = tuple(definitions)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = self._template(key)
        head, middle, keys = template
        parts = [head, str(int(time.time() * 1000)), middle]
        for name_key, value in zip(keys, values, strict=True):
            parts.append(name_key)
            parts.append(value)
        parts.append("}")
        return "".join(parts)

    def _template(self, definitions: _Definitions) -> tuple[str, str, tuple[str, ...]]:
        """The fixed text around the timestamp and each metric's values, as Powertools serializes the
        document: json.dumps with compact separators (ASCII only), the directive, the dimension, values."""
        directive = [
            {
                "Namespace": self._namespace,
                "Dimensions": [[SERVICE_DIMENSION]],
                "Metrics": [{"Name": name, "Unit": unit} for name, unit in definitions],
            }
        ]
        middle = (
            f',"CloudWatchMetrics":{_compact(directive)}}},'
            f"{_compact(SERVICE_DIMENSION)}:{_compact(self._service)}"
        )
        keys = tuple(f",{_compact(name)}:" for name, _ in definitions)
        return '{"_aws":{"Timestamp":', middle, keys


def _may_be_disabled() -> bool:
    # Powertools' own check parses two variables on every call; when neither is set the answer is no.
    if POWERTOOLS_DEV_ENV not in os.environ and METRICS_DISABLED_ENV not in os.environ:
        return False
    return is_metrics_disabled()


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


logger = Logger(service=SERVICE_NAME)
metrics = EmfMetrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)

__all__ = ["EmfMetrics", "MetricUnit", "logger", "metrics"]
