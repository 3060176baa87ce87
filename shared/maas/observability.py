"""The process's structured logger and EMF metrics. Log metadata (model, version, timings), never payload
values."""

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
