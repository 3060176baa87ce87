"""Reads template.yaml, the single source of truth for routes and function settings.

The local gateway serves exactly what SAM deploys: HttpApi events become routes, Globals merge under
each function, and CloudFormation intrinsics stay as {"Ref": ...} / {"Fn::Sub": ...} dicts until an
`IntrinsicResolver` that knows the local stack's values turns them into strings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maas.errors import ConfigurationError

logger = logging.getLogger(__name__)

ANY_METHOD = "ANY"
DEFAULT_ROUTE = "$default"
FUNCTION_TYPE = "AWS::Serverless::Function"
HTTP_API_EVENT = "HttpApi"
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", ANY_METHOD})

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ConfigurationError):
    """template.yaml cannot be served as written (malformed event, duplicate route). HTTP 500."""


class UnresolvedIntrinsicError(ConfigurationError):
    """An intrinsic has no local value (e.g. a GetAtt of a resource the emulator does not create)."""


class CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]  # yaml ships no stubs here
    """SafeLoader that reads CloudFormation short tags (!Ref, !Sub, !GetAtt ...) as their long form."""


def _construct_intrinsic(loader: CloudFormationLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def parse_cloudformation_yaml(text: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=CloudFormationLoader)
    except yaml.YAMLError as exc:
        raise TemplateError(f"template: expected valid YAML, got {exc}") from None
    if not isinstance(document, dict):
        raise TemplateError("template: expected a YAML mapping at the top level")
    return document


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function as Lambda would run it: Globals merged under its own properties, intrinsics unresolved."""

    logical_id: str
    code_uri: str
    handler: str
    runtime: str | None
    timeout: Any
    memory_size: Any
    environment: Mapping[str, Any]

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rpartition(".")[2]

    def handler_file(self, root: Path) -> Path:
        """The file Lambda imports: CodeUri plus the handler's module path."""
        module = self.handler_module.replace(".", "/")
        return root / self.code_uri / f"{module}.py"


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP API route: `method` is a verb or ANY, `path` a pattern like /v2/models/{name} or $default."""

    method: str
    path: str
    function: FunctionSpec
    event_id: str
    api_id: str | None = None

    @property
    def route_key(self) -> str:
        """The routeKey API Gateway puts in the event: "POST /v2/models/{name}/infer" or "$default"."""
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    @property
    def function_id(self) -> str:
        return self.function.logical_id

    @property
    def code_uri(self) -> str:
        return self.function.code_uri

    @property
    def handler(self) -> str:
        return self.function.handler

    @property
    def environment(self) -> Mapping[str, Any]:
        return self.function.environment


@dataclass(frozen=True, slots=True)
class TemplateParameter:
    name: str
    type: str
    default: Any = None


@dataclass(frozen=True, slots=True)
class SamTemplate:
    """What the local stack needs from template.yaml."""

    parameters: Mapping[str, TemplateParameter]
    resources: Mapping[str, Mapping[str, Any]]
    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]

    def resources_of_type(self, resource_type: str) -> list[str]:
        return [rid for rid, res in self.resources.items() if res.get("Type") == resource_type]


def load_template(path: Path) -> SamTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"template: cannot read {path}: {exc.strerror}") from None
    return parse_template(text)


def parse_template(text: str) -> SamTemplate:
    document = parse_cloudformation_yaml(text)
    resources = document.get("Resources") or {}
    if not isinstance(resources, dict):
        raise TemplateError("template: expected Resources to be a mapping")
    global_function = ((document.get("Globals") or {}).get("Function")) or {}
    functions = {
        rid: _function_spec(rid, res.get("Properties") or {}, global_function)
        for rid, res in resources.items()
        if isinstance(res, dict) and res.get("Type") == FUNCTION_TYPE
    }
    routes: list[Route] = []
    for rid, spec in functions.items():
        events = (resources[rid].get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items():
            if isinstance(event, dict) and event.get("Type") == HTTP_API_EVENT:
                routes.append(_route(spec, event_id, event.get("Properties") or {}))
    _reject_duplicate_routes(routes)
    parameters = {
        name: TemplateParameter(name=name, type=str(p.get("Type", "String")), default=p.get("Default"))
        for name, p in (document.get("Parameters") or {}).items()
    }
    return SamTemplate(parameters=parameters, resources=resources, functions=functions, routes=tuple(routes))


def _function_spec(
    logical_id: str, properties: Mapping[str, Any], globals_: Mapping[str, Any]
) -> FunctionSpec:
    merged = {**globals_, **properties}
    code_uri = merged.get("CodeUri")
    handler = merged.get("Handler")
    if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
        raise TemplateError(
            f"function {logical_id}: expected a local CodeUri and a Handler like 'app.lambda_handler', "
            f"got CodeUri={code_uri!r}, Handler={handler!r}"
        )
    environment = {
        **((globals_.get("Environment") or {}).get("Variables") or {}),
        **((properties.get("Environment") or {}).get("Variables") or {}),
    }
    return FunctionSpec(
        logical_id=logical_id,
        code_uri=code_uri,
        handler=handler,
        runtime=merged.get("Runtime"),
        timeout=merged.get("Timeout", DEFAULT_TIMEOUT_SECONDS),
        memory_size=merged.get("MemorySize", DEFAULT_MEMORY_MB),
        environment=environment,
    )


def _route(function: FunctionSpec, event_id: str, properties: Mapping[str, Any]) -> Route:
    path = properties.get("Path")
    method = properties.get("Method")
    api = properties.get("ApiId")
    api_id = api.get("Ref") if isinstance(api, dict) else None
    if path is None and method is None:
        return Route(ANY_METHOD, DEFAULT_ROUTE, function, event_id, api_id)
    if not isinstance(path, str) or not path.startswith("/"):
        raise TemplateError(
            f"{function.logical_id}.{event_id}: expected Path starting with '/', got {path!r}"
        )
    verb = ANY_METHOD if method is None else str(method).upper()
    if verb not in HTTP_METHODS:
        raise TemplateError(f"{function.logical_id}.{event_id}: expected Method in {sorted(HTTP_METHODS)}")
    if any(segment.endswith("+}") for segment in path.split("/")[:-1]):
        raise TemplateError(
            f"{function.logical_id}.{event_id}: a greedy {{x+}} variable must be last in {path}"
        )
    return Route(verb, path, function, event_id, api_id)


def _reject_duplicate_routes(routes: list[Route]) -> None:
    seen: dict[tuple[str | None, str], str] = {}
    for route in routes:
        key = (route.api_id, route.route_key)
        where = f"{route.function_id}.{route.event_id}"
        if key in seen:
            raise TemplateError(f"route {route.route_key!r} is declared twice: {seen[key]} and {where}")
        seen[key] = where


@dataclass(frozen=True, slots=True)
class IntrinsicResolver:
    """Resolves the intrinsics a local run can know: parameter and resource Refs, pseudo parameters,
    Fn::Sub and Fn::Join over those. Anything else raises UnresolvedIntrinsicError."""

    parameters: Mapping[str, str]
    resources: Mapping[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    partition: str = "aws"
    stack_name: str = "maas-local"

    @classmethod
    def for_template(
        cls,
        template: SamTemplate,
        overrides: Mapping[str, str] | None = None,
        *,
        resources: Mapping[str, str] | None = None,
        region: str = "us-east-1",
    ) -> IntrinsicResolver:
        """Parameter defaults from the template, with explicit overrides on top."""
        values = {n: _scalar(p.default) for n, p in template.parameters.items() if p.default is not None}
        values.update(overrides or {})
        return cls(parameters=values, resources=dict(resources or {}), region=region)

    def resolve(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            fn, arg = next(iter(value.items()))
            if fn == "Ref":
                return self._ref(str(arg))
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
                return str(arg[0]).join(self.resolve(item) for item in arg[1])
        raise UnresolvedIntrinsicError(f"intrinsic {value!r}: no local value")

    def resolve_environment(self, function: FunctionSpec) -> dict[str, str]:
        """Every variable with a local value; ones without are left out and logged, never guessed."""
        resolved: dict[str, str] = {}
        for name, raw in function.environment.items():
            if raw == {"Ref": "AWS::NoValue"}:
                continue
            try:
                resolved[name] = self.resolve(raw)
            except UnresolvedIntrinsicError as exc:
                logger.warning("%s: environment variable %s left unset (%s)", function.logical_id, name, exc)
        return resolved

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }
        for table in (pseudo, self.parameters, self.resources):
            if name in table:
                return table[name]
        raise UnresolvedIntrinsicError(f"Ref {name!r}: no local value")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            raise UnresolvedIntrinsicError(f"Fn::Sub {arg!r}: expected a string or [string, variables]")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return variables[name]
            return self._ref(name)

        return _SUB_VARIABLE.sub(substitute, text)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
