"""Async function: V2, chat and completion requests from SQS, answered in results/<id>.json; partial batch
failures reported."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.async_ import build_async_app

app = build_async_app()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
