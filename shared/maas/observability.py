"""The process's structured logger and EMF metrics. Log metadata (model, version, timings), never payload
values: not the event, not a tensor, not an exception's text (it can quote the payload; log its type).

There is deliberately no Powertools Tracer: X-Ray segments come from Lambda's active tracing alone, and
template.yaml still sets POWERTOOLS_TRACER_CAPTURE_RESPONSE/ERROR to false, so a Tracer added later cannot
put responses (outputs) or exception texts into traces. tests/functional/functions/test_privacy.py
holds this."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from maas.config import ENV_SERVICE_NAME

SERVICE_NAME = os.environ.get(ENV_SERVICE_NAME) or "maas"
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "maas"

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)

__all__ = ["MetricUnit", "logger", "metrics"]
