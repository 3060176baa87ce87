"""Local development: template.yaml served by an HTTP API emulator, SQS pollers and a Step Functions
interpreter over an embedded S3/SQS/Step Functions.

Offline only: nothing online imports this package.
"""

from __future__ import annotations

from maas.local.cloudformation import IntrinsicResolver, TemplateError
from maas.local.gateway import LocalGateway
from maas.local.http_events import http_api_event, http_response_from_lambda
from maas.local.lambdas import LocalFunctions
from maas.local.object_store import StoreChoice, choose_store
from maas.local.queues import LocalQueue, SqsPoller
from maas.local.sam import (
    FunctionSpec,
    JwtConfiguration,
    RouteAuthorization,
    SamTemplate,
    StateMachineSpec,
    TemplateRoute,
)
from maas.local.sigv4 import LocalCredentials
from maas.local.stack import LocalStack, parse_parameter_overrides
from maas.local.state_machines import LocalStateMachine, StateMachineRunner
from maas.local.step_functions import DefinitionError, Interpreter, StateMachineDefinition
from maas.local.template_reader import load_template, parse_template
from maas.local.template_routes import TemplateRoutes

__all__ = [
    "DefinitionError",
    "FunctionSpec",
    "Interpreter",
    "IntrinsicResolver",
    "JwtConfiguration",
    "LocalCredentials",
    "LocalFunctions",
    "LocalGateway",
    "LocalQueue",
    "LocalStack",
    "LocalStateMachine",
    "RouteAuthorization",
    "SamTemplate",
    "SqsPoller",
    "StateMachineDefinition",
    "StateMachineRunner",
    "StateMachineSpec",
    "StoreChoice",
    "TemplateError",
    "TemplateRoute",
    "TemplateRoutes",
    "choose_store",
    "http_api_event",
    "http_response_from_lambda",
    "load_template",
    "parse_parameter_overrides",
    "parse_template",
]
