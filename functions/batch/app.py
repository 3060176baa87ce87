"""Batch function: jobs/<model-ref>/<job-id>/input.* (via S3 -> SQS) into output.jsonl and status.json."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.batch import build_batch_app

app = build_batch_app()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
