"""The infer function's HTTP app: V2, V1 and docs routes over the inference service."""

from __future__ import annotations

from maas.api.docs_routes import register_docs_routes
from maas.api.lambda_app import MultiFormatApp, register_error_handlers
from maas.api.routing import RouteTable
from maas.api.v1_routes import register_v1_routes
from maas.api.v2_routes import register_v2_routes
from maas.service.inference import InferenceService


class HttpApp(MultiFormatApp):
    """The infer function's app: V2, V1 and docs routes over the inference service."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        routes = RouteTable()
        register_v2_routes(routes, service)
        register_v1_routes(routes, service)
        register_docs_routes(routes, swagger_ui_enabled=service.settings.docs_enabled)
        register_error_handlers(routes)
        super().__init__(routes)


def build_http_app(service: InferenceService | None = None) -> HttpApp:
    return HttpApp(service or InferenceService.from_settings())
