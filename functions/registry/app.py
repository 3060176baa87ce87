"""Registry function: list and inspect models, move aliases, promote, roll back, tag and archive versions."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.registry import build_registry_app

app = build_registry_app()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
