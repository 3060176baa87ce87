"""The process's structured logger. Log metadata (model, version, timings), never payload values."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

from maas.config import ENV_SERVICE_NAME

logger = Logger(service=os.environ.get(ENV_SERVICE_NAME) or "maas")
