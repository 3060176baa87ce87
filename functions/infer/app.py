"""Infer function: V2 inference, metadata and health over API Gateway or a Function URL."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.http_app import build_http_app

app = build_http_app()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
