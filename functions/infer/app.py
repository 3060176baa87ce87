"""Infer function: V2/V1 inference, metadata and health over HTTP, direct invokes, and scheduled warm-up."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.infer import build_infer_app

app = build_infer_app()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
