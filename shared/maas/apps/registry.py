"""The registry function's composition root: the registry routes over RegistryAdmin, behind the Lambda edge,
with the same error mapping, correlation ids and metrics as the infer function. It never imports the
inference service, so it starts without onnxruntime."""

from __future__ import annotations

from maas.api.http_transport import MultiFormatApp, register_error_handlers
from maas.api.registry_routes import register_registry_routes
from maas.api.routing import ServedRoutes
from maas.apps.edge import BehindEdge
from maas.apps.snapstart import register_snapshot_hooks
from maas.config import Settings
from maas.registry.admin import RegistryAdmin
from maas.registry.store import ModelRegistry

REGISTRY_ROUTE_HINT = (
    "a registry route such as GET /registry/models or PUT /registry/models/{name}/aliases/{alias}"
)


def registry_http_app(admin: RegistryAdmin, settings: Settings) -> MultiFormatApp:
    """Registry administration over HTTP; the write side the infer function never has."""
    routes = ServedRoutes()
    register_registry_routes(
        routes,
        admin,
        max_request_bytes=settings.max_request_bytes,
        compressed_bodies=settings.compressed_bodies,
        max_json_depth=settings.max_json_depth,
    )
    register_error_handlers(routes, REGISTRY_ROUTE_HINT)
    return MultiFormatApp(routes)


def build_registry_app(
    registry: ModelRegistry | None = None, settings: Settings | None = None
) -> BehindEdge[MultiFormatApp]:
    settings = settings or Settings.from_env()
    registry = registry or ModelRegistry.from_settings(settings)
    # Not onnxruntime's packages: this function never loads a model.
    register_snapshot_hooks(packages=("maas.registry",))
    return BehindEdge(registry_http_app(RegistryAdmin(registry), settings))
