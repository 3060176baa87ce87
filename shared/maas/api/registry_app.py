"""The registry function's HTTP edge: registry routes served to REST API v1, HTTP API v2 and Function URL
events, with the same error mapping, correlation ids and metrics as the infer function's app."""

from __future__ import annotations

from maas.api.lambda_app import MultiFormatApp, register_error_handlers
from maas.api.registry_routes import register_registry_routes
from maas.api.routing import RouteTable
from maas.aws_clients import s3_client
from maas.config import Settings
from maas.registry.admin import RegistryAdmin
from maas.registry.signing import signer_from_settings
from maas.registry.store import ModelRegistry

REGISTRY_ROUTE_HINT = (
    "a registry route such as GET /registry/models or PUT /registry/models/{name}/aliases/{alias}"
)


class RegistryHttpApp(MultiFormatApp):
    """Registry administration over HTTP; the write side the infer function never has."""

    def __init__(self, admin: RegistryAdmin, settings: Settings) -> None:
        self.admin = admin
        self.settings = settings
        routes = RouteTable()
        register_registry_routes(
            routes,
            admin,
            max_request_bytes=settings.max_request_bytes,
            compressed_bodies=settings.compressed_bodies,
            max_json_depth=settings.max_json_depth,
        )
        register_error_handlers(routes, REGISTRY_ROUTE_HINT)
        super().__init__(routes)


def build_registry_app(
    registry: ModelRegistry | None = None, settings: Settings | None = None
) -> RegistryHttpApp:
    settings = settings or Settings.from_env()
    if registry is None:
        registry = ModelRegistry(
            s3_client(settings.endpoint_url),
            settings.bucket,
            prefix=settings.prefix,
            default_alias=settings.default_alias,
            signer=signer_from_settings(settings),
        )
    return RegistryHttpApp(RegistryAdmin(registry), settings)
