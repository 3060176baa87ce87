"""Local development: template.yaml's routes served by an HTTP API emulator over an embedded S3.

Offline only: nothing online imports this package.
"""

from __future__ import annotations

from maas.local.gateway import LocalGateway, RouteTable, http_api_event, http_response_from_lambda
from maas.local.stack import LocalStack, StoreChoice, choose_store, seed_registry, serve
from maas.local.template import (
    FunctionSpec,
    IntrinsicResolver,
    Route,
    SamTemplate,
    TemplateError,
    load_template,
    parse_template,
)

__all__ = [
    "FunctionSpec",
    "IntrinsicResolver",
    "LocalGateway",
    "LocalStack",
    "Route",
    "RouteTable",
    "SamTemplate",
    "StoreChoice",
    "TemplateError",
    "choose_store",
    "http_api_event",
    "http_response_from_lambda",
    "load_template",
    "parse_template",
    "seed_registry",
    "serve",
]
