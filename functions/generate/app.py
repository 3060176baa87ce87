"""Generate function: OpenAI-compatible chat and text completions and Triton's generate extension, answered
whole (lambda_handler) or streamed as Server-Sent Events (stream_handler, for a streaming runtime)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.http_stream import HttpStream
from maas.apps.generate import build_generate_app

app = build_generate_app()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def stream_handler(event: dict[str, Any], context: LambdaContext) -> HttpStream:
    return app.stream(event, context)
