"""The generate function's composition root: the OpenAI-compatible routes and Triton's generate extension
over one completion service, behind the Lambda edge, answered whole or streamed.

    lambda_handler(event, context) -> dict         the whole answer; an event stream's body all at once
    stream_handler(event, context) -> HttpStream   status and headers, then events as they are generated

Both go through the same edge (correlation id, cold start, error counts), routes, checks and logs; they
differ only in when an event stream's events are generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.generate_routes import register_generate_routes
from maas.api.generation_http import GenerationHttpApp, StreamedAnswers, as_http_stream
from maas.api.http_stream import HttpStream
from maas.api.http_transport import register_error_handlers
from maas.api.openai_routes import in_openai_shape, register_openai_routes
from maas.api.routing import ServedRoutes
from maas.apps.edge import Edge
from maas.apps.snapstart import register_snapshot_hooks
from maas.config import function_settings
from maas.errors import InvalidInput
from maas.service.completions import CompletionService

GENERATE_ROUTE_HINT = (
    "an OpenAI-compatible route such as POST /openai/v1/chat/completions, or POST /v2/models/{name}/generate"
)
UNSUPPORTED_GENERATE_EVENT = "event: expected an API Gateway or Function URL request"


def generate_http_app(service: CompletionService) -> GenerationHttpApp:
    routes = ServedRoutes()
    answers = StreamedAnswers(service.settings.max_response_bytes)
    register_openai_routes(routes, service, answers)
    register_generate_routes(routes, service, answers)
    register_error_handlers(routes, GENERATE_ROUTE_HINT)
    return GenerationHttpApp(routes, answers, in_openai_shape)


class GenerateFunction(Edge):
    def __init__(self, service: CompletionService) -> None:
        self.service = service
        self.http = generate_http_app(service)

    def answer(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        if "requestContext" in event or "httpMethod" in event:
            return self.http.resolve(event, context)
        raise InvalidInput(UNSUPPORTED_GENERATE_EVENT)

    def stream(self, event: Mapping[str, Any], context: LambdaContext | None) -> HttpStream:
        """The answer `resolve` gives, but an event stream's events are generated as they are sent."""
        with self.http.answers.streaming() as pending:
            response = self.resolve(event, context)
        return as_http_stream(response, pending)


def build_generate_app(service: CompletionService | None = None) -> GenerateFunction:
    if service is None:
        service = CompletionService.from_settings(function_settings("GenerateMemorySize"))
    # No warm-up: WarmModels names the infer function's models, not text generators.
    register_snapshot_hooks()
    return GenerateFunction(service)
