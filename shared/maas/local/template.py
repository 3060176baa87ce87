"""Reads template.yaml, the single source of truth for routes, queues and function settings.

The local stack serves exactly what SAM deploys: HttpApi events become routes, SQS events become
pollers, AWS::SQS::Queue resources become queues and a bucket's QueueConfigurations become its
notifications. Globals merge under each function, and CloudFormation intrinsics stay as
{"Ref": ...} / {"Fn::Sub": ...} dicts until an `IntrinsicResolver` that knows the local stack's
values turns them into strings. Event types the emulator does not run (Schedule, ...) are skipped.

Parameters are known when the template is read (defaults, then overrides), so Conditions are
evaluated then, as CloudFormation does at deploy time: a resource whose Condition is false does not
exist, every Fn::If takes its branch and AWS::NoValue removes its key. Each route gets the
authorization API Gateway would enforce on it (see `RouteAuthorization`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from maas.errors import ConfigurationError

logger = logging.getLogger(__name__)

ANY_METHOD = "ANY"
DEFAULT_ROUTE = "$default"
FUNCTION_TYPE = "AWS::Serverless::Function"
QUEUE_TYPE = "AWS::SQS::Queue"
EVENT_SOURCE_MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
BUCKET_TYPE = "AWS::S3::Bucket"
HTTP_API_TYPE = "AWS::Serverless::HttpApi"
HTTP_API_EVENT = "HttpApi"
SQS_EVENT = "SQS"
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
# Lambda's defaults for an SQS event source mapping, and SQS's own for a queue.
DEFAULT_SQS_BATCH_SIZE = 10
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 30
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", ANY_METHOD})
NO_VALUE = "AWS::NoValue"
DEFAULT_REGION = "us-east-1"
# Authorizer names SAM reserves in an event's Auth.Authorizer and an API's DefaultAuthorizer.
IAM_AUTHORIZER = "AWS_IAM"
NO_AUTHORIZER = "NONE"
DEFAULT_IDENTITY_SOURCE = "$request.header.Authorization"
# How an API Gateway OpenAPI document names ANY and marks SigV4 and JWT security schemes.
OPENAPI_ANY_METHOD = "x-amazon-apigateway-any-method"
OPENAPI_AUTHTYPE = "x-amazon-apigateway-authtype"
OPENAPI_AUTHORIZER = "x-amazon-apigateway-authorizer"
SIGV4_AUTHTYPE = "awsSigv4"

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ConfigurationError):
    """template.yaml cannot be served as written (malformed event, duplicate route). HTTP 500."""


class UnresolvedIntrinsicError(ConfigurationError):
    """An intrinsic has no local value (e.g. a GetAtt of a resource the emulator does not create)."""


class NoValueError(UnresolvedIntrinsicError):
    """The value is AWS::NoValue: CloudFormation leaves the property out, so the local stack does too."""


class _NoValue:
    """What AWS::NoValue evaluates to while a structure is walked: the key or item is then dropped."""


_NO_VALUE: Final = _NoValue()


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


AuthorizationType = Literal["NONE", "AWS_IAM", "JWT", "CUSTOM"]


@dataclass(frozen=True, slots=True)
class JwtConfiguration:
    """A JWT authorizer's settings. `issuer` is None when the template gives it no local value (a Ref
    to a resource, an unset parameter): no token can then be checked, so every one is refused."""

    issuer: str | None
    audience: tuple[str, ...]
    identity_sources: tuple[str, ...] = (DEFAULT_IDENTITY_SOURCE,)


@dataclass(frozen=True, slots=True)
class RouteAuthorization:
    """What API Gateway checks before it invokes a route, by its AuthorizationType: nothing (NONE), a
    SigV4 signature (AWS_IAM), a bearer JWT (JWT), or a Lambda authorizer (CUSTOM, not emulated)."""

    type: AuthorizationType = "NONE"
    authorizer: str | None = None
    jwt: JwtConfiguration | None = None
    scopes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.type == "AWS_IAM":
            return "AWS_IAM (SigV4-signed)"
        if self.type == "JWT":
            issuer = self.jwt.issuer if self.jwt and self.jwt.issuer else "an issuer with no local value"
            scopes = f", scopes {' '.join(self.scopes)}" if self.scopes else ""
            return f"JWT from {issuer}{scopes}"
        if self.type == "CUSTOM":
            return f"Lambda authorizer {self.authorizer} (not emulated: refused)"
        return "NONE (open)"


NO_AUTHORIZATION = RouteAuthorization()


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP API route: `method` is a verb or ANY, `path` a pattern like /v2/models/{name} or $default."""

    method: str
    path: str
    function: FunctionSpec
    event_id: str
    api_id: str | None = None
    authorization: RouteAuthorization = NO_AUTHORIZATION

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
class RedrivePolicy:
    """Where SQS moves a message received `max_receive_count` times: a queue of the same template."""

    dead_letter_queue_id: str
    max_receive_count: Any


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """An AWS::SQS::Queue. `attributes` are its SQS attributes as CloudFormation names them
    (VisibilityTimeout, MessageRetentionPeriod, FifoQueue ...), intrinsics unresolved; the redrive
    policy is parsed apart because its target is another resource."""

    logical_id: str
    attributes: Mapping[str, Any]
    redrive_policy: RedrivePolicy | None = None

    @property
    def fifo(self) -> bool:
        return str(self.attributes.get("FifoQueue", False)).lower() == "true"

    @property
    def visibility_timeout(self) -> Any:
        return self.attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT_SECONDS)


@dataclass(frozen=True, slots=True)
class SqsEventSource:
    """An SQS event of a function (Lambda's event source mapping); numbers may be unresolved intrinsics."""

    function: FunctionSpec
    event_id: str
    queue_id: str
    batch_size: Any = DEFAULT_SQS_BATCH_SIZE
    maximum_batching_window_seconds: Any = 0
    report_batch_item_failures: bool = False
    enabled: Any = True

    @property
    def function_id(self) -> str:
        return self.function.logical_id


@dataclass(frozen=True, slots=True)
class QueueNotification:
    """One QueueConfigurations entry of a bucket: S3 events on matching keys are sent to a queue."""

    bucket_id: str
    event: str
    queue_id: str
    filter_rules: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateParameter:
    name: str
    type: str
    default: Any = None
    allowed_values: tuple[str, ...] = ()
    allowed_pattern: str | None = None

    @property
    def is_list(self) -> bool:
        """A Ref to it is a list (CommaDelimitedList, List<...>), not a string."""
        return self.type == "CommaDelimitedList" or self.type.startswith("List<")

    def check(self, value: str) -> None:
        """CloudFormation refuses a value outside AllowedValues or AllowedPattern; so does the local stack."""
        items = [v.strip() for v in value.split(",")] if self.is_list else [value]
        for item in items:
            if self.allowed_values and item not in self.allowed_values:
                raise TemplateError(
                    f"parameter {self.name}: expected one of {', '.join(self.allowed_values)}, got {item!r}"
                )
            if self.allowed_pattern is not None and not re.fullmatch(self.allowed_pattern, item):
                raise TemplateError(
                    f"parameter {self.name}: expected a value matching {self.allowed_pattern}, got {item!r}"
                )


@dataclass(frozen=True, slots=True)
class SamTemplate:
    """What the local stack needs from template.yaml."""

    parameters: Mapping[str, TemplateParameter]
    resources: Mapping[str, Mapping[str, Any]]
    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    queues: Mapping[str, QueueSpec] = field(default_factory=dict)
    sqs_event_sources: tuple[SqsEventSource, ...] = ()
    queue_notifications: tuple[QueueNotification, ...] = ()
    # Defaults with the overrides it was read with on top; Conditions as written (already applied).
    parameter_values: Mapping[str, str] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)

    def queues_in_creation_order(self) -> list[QueueSpec]:
        """Dead-letter queues before the queues that redrive to them, as CloudFormation orders them."""
        ordered: list[QueueSpec] = []
        placed: set[str] = set()

        def place(queue: QueueSpec, chain: tuple[str, ...]) -> None:
            if queue.logical_id in placed:
                return
            if queue.logical_id in chain:
                cycle = " -> ".join((*chain, queue.logical_id))
                raise TemplateError(f"queues: expected no redrive cycle, got {cycle}")
            if queue.redrive_policy is not None:
                place(self.queues[queue.redrive_policy.dead_letter_queue_id], (*chain, queue.logical_id))
            placed.add(queue.logical_id)
            ordered.append(queue)

        for queue in self.queues.values():
            place(queue, ())
        return ordered

    def resources_of_type(self, resource_type: str) -> list[str]:
        return [rid for rid, res in self.resources.items() if res.get("Type") == resource_type]


def load_template(
    path: Path, parameters: Mapping[str, str] | None = None, *, region: str = DEFAULT_REGION
) -> SamTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"template: cannot read {path}: {exc.strerror}") from None
    return parse_template(text, parameters, region=region)


def parse_template(
    text: str, parameters: Mapping[str, str] | None = None, *, region: str = DEFAULT_REGION
) -> SamTemplate:
    """The template as CloudFormation deploys it with these parameter values (overrides over defaults)."""
    document = parse_cloudformation_yaml(text)
    written_resources = document.get("Resources") or {}
    if not isinstance(written_resources, dict):
        raise TemplateError("template: expected Resources to be a mapping")
    conditions = document.get("Conditions") or {}
    if not isinstance(conditions, dict):
        raise TemplateError("template: expected Conditions to be a mapping")
    declared = _declared_parameters(document.get("Parameters") or {})
    values = _parameter_values(declared, parameters or {})
    resolver = IntrinsicResolver(
        parameters=values,
        region=region,
        conditions=conditions,
        list_parameters=frozenset(name for name, p in declared.items() if p.is_list),
    )
    resources = _deployed_resources(written_resources, resolver)
    globals_ = _with_conditions_applied(document.get("Globals") or {}, resolver, "Globals")
    global_function = globals_.get("Function") or {}
    functions = {
        rid: _function_spec(rid, res.get("Properties") or {}, global_function)
        for rid, res in resources.items()
        if res.get("Type") == FUNCTION_TYPE
    }
    queue_ids = [rid for rid, res in resources.items() if res.get("Type") == QUEUE_TYPE]
    queues = {rid: _queue_spec(rid, resources[rid].get("Properties") or {}, queue_ids) for rid in queue_ids}
    apis = _http_apis(resources, globals_.get("HttpApi") or {})
    routes: list[Route] = []
    sqs_event_sources: list[SqsEventSource] = []
    for rid, spec in functions.items():
        events = (resources[rid].get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items():
            if not isinstance(event, dict):
                continue
            if event.get("Type") == HTTP_API_EVENT:
                properties = event.get("Properties") or {}
                route = _route(spec, event_id, properties)
                authorization = _route_authorization(
                    route, properties, apis.get(route.api_id) or {}, resolver
                )
                routes.append(replace(route, authorization=authorization))
            elif event.get("Type") == SQS_EVENT:
                sqs_event_sources.append(
                    _sqs_event_source(spec, event_id, event.get("Properties") or {}, queues)
                )
            else:
                logger.debug("%s.%s: %s events are not emulated locally", rid, event_id, event.get("Type"))
    sqs_event_sources.extend(_event_source_mappings(resources, functions, queues))
    _reject_duplicate_routes(routes)
    notifications = [
        notification
        for rid, res in resources.items()
        if res.get("Type") == BUCKET_TYPE
        for notification in _queue_notifications(rid, res.get("Properties") or {}, queues)
    ]
    template = SamTemplate(
        parameters=declared,
        resources=resources,
        functions=functions,
        routes=tuple(routes),
        queues=queues,
        sqs_event_sources=tuple(sqs_event_sources),
        queue_notifications=tuple(notifications),
        parameter_values=values,
        conditions=conditions,
    )
    template.queues_in_creation_order()  # a redrive cycle is a template error, found at load time
    return template


def _declared_parameters(parameters: Any) -> dict[str, TemplateParameter]:
    if not isinstance(parameters, dict):
        raise TemplateError("template: expected Parameters to be a mapping")
    declared = {}
    for name, written in parameters.items():
        spec = written if isinstance(written, dict) else {}
        declared[name] = TemplateParameter(
            name=name,
            type=str(spec.get("Type", "String")),
            default=spec.get("Default"),
            allowed_values=tuple(_scalar(v) for v in spec.get("AllowedValues") or ()),
            allowed_pattern=spec.get("AllowedPattern"),
        )
    return declared


def _parameter_values(
    declared: Mapping[str, TemplateParameter], overrides: Mapping[str, str]
) -> dict[str, str]:
    """Defaults, then overrides. An undeclared override is a typo, which CloudFormation refuses too."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(
            f"parameter overrides: expected names from the template's Parameters "
            f"({', '.join(declared) or 'none'}), got {', '.join(unknown)}"
        )
    for name, value in overrides.items():
        declared[name].check(value)
    values = {name: _scalar(p.default) for name, p in declared.items() if p.default is not None}
    values.update(overrides)
    return values


def _deployed_resources(
    resources: Mapping[str, Any], resolver: IntrinsicResolver
) -> dict[str, dict[str, Any]]:
    """The resources whose Condition holds, with each Fn::If's branch taken and AWS::NoValue keys removed."""
    deployed: dict[str, dict[str, Any]] = {}
    for rid, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        condition = resource.get("Condition")
        if condition is not None:
            try:
                exists = resolver.condition(str(condition))
            except UnresolvedIntrinsicError as exc:
                raise TemplateError(
                    f"{rid}.Condition: {exc}; give the parameter a value (a parameter override)"
                ) from None
            if not exists:
                logger.debug("%s: condition %s is false, so the resource does not exist", rid, condition)
                continue
        deployed[rid] = _with_conditions_applied(resource, resolver, rid)
    return deployed


def _with_conditions_applied(value: Any, resolver: IntrinsicResolver, where: str) -> dict[str, Any]:
    try:
        applied = resolver.apply_conditions(value)
    except UnresolvedIntrinsicError as exc:
        raise TemplateError(f"{where}: {exc}; give the parameter a value (a parameter override)") from None
    if not isinstance(applied, dict):
        raise TemplateError(f"{where}: expected a mapping, got {applied!r}")
    return applied


def _http_apis(
    resources: Mapping[str, Mapping[str, Any]], globals_http_api: Mapping[str, Any]
) -> dict[str | None, Mapping[str, Any]]:
    """Each HttpApi's properties over Globals.HttpApi; key None is SAM's implicit API (no ApiId)."""
    apis: dict[str | None, Mapping[str, Any]] = {None: dict(globals_http_api)}
    for rid, resource in resources.items():
        if resource.get("Type") == HTTP_API_TYPE:
            apis[rid] = _merged(globals_http_api, resource.get("Properties") or {})
    return apis


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


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


def _route_authorization(
    route: Route, event_properties: Mapping[str, Any], api: Mapping[str, Any], resolver: IntrinsicResolver
) -> RouteAuthorization:
    """What API Gateway enforces on a route, as SAM configures it: the event's Auth.Authorizer, else the
    security of the route's operation in the API's DefinitionBody, else the API's DefaultAuthorizer."""
    where = f"{route.function_id}.{route.event_id}"
    auth = _mapping(api.get("Auth"))
    authorizers = _mapping(auth.get("Authorizers"))
    event_auth = _mapping(event_properties.get("Auth"))
    try:
        scopes = _strings(resolver.resolve_value(event_auth.get("AuthorizationScopes")))
        if event_auth.get("Authorizer") is not None:
            name = resolver.resolve(event_auth["Authorizer"])
            return _named_authorization(name, scopes, authorizers, resolver, where)
        body = _mapping(api.get("DefinitionBody"))
        security = _operation_security(body, route)
        if security is not None:
            return _security_authorization(security, scopes, body, authorizers, resolver, where=where)
        if auth.get("DefaultAuthorizer") is not None:
            name = resolver.resolve(auth["DefaultAuthorizer"])
            return _named_authorization(name, scopes, authorizers, resolver, where)
    except UnresolvedIntrinsicError as exc:
        raise TemplateError(f"{where}: its authorization has no local value ({exc})") from None
    return NO_AUTHORIZATION


def _operation_security(body: Mapping[str, Any], route: Route) -> Any:
    """The OpenAPI security requirements of the route's operation, else the document's; None if neither."""
    path_item = _mapping(_mapping(body.get("paths")).get(route.path))
    operation = _mapping(
        path_item.get(OPENAPI_ANY_METHOD if route.method == ANY_METHOD else route.method.lower())
    )
    if "security" in operation:
        return operation["security"]
    return body.get("security")


def _security_authorization(
    security: Any,
    route_scopes: tuple[str, ...],
    body: Mapping[str, Any],
    authorizers: Mapping[str, Any],
    resolver: IntrinsicResolver,
    *,
    where: str,
) -> RouteAuthorization:
    requirements = resolver.resolve_value(security)
    if not isinstance(requirements, list) or not all(isinstance(r, dict) for r in requirements):
        raise TemplateError(
            f"{where}: expected its OpenAPI security to be a list of mappings, got {requirements!r}"
        )
    # [] and [{}] both mean "no authorization"; API Gateway honours one requirement per route.
    named = [r for r in requirements if r]
    if not named:
        return NO_AUTHORIZATION
    if len(named) > 1 or len(named[0]) > 1:
        raise TemplateError(f"{where}: expected one OpenAPI security requirement, got {requirements!r}")
    name, scheme_scopes = next(iter(named[0].items()))
    scopes = route_scopes or _strings(scheme_scopes)
    scheme = _mapping(_mapping(_mapping(body.get("components")).get("securitySchemes")).get(name))
    if scheme.get(OPENAPI_AUTHTYPE) == SIGV4_AUTHTYPE:
        return RouteAuthorization("AWS_IAM", str(name))
    extension = _mapping(scheme.get(OPENAPI_AUTHORIZER))
    if extension:
        if str(extension.get("type", "")).lower() == "jwt":
            configuration = _jwt_configuration(
                extension.get("jwtConfiguration"), extension.get("identitySource"), resolver
            )
            return RouteAuthorization("JWT", str(name), configuration, scopes)
        return RouteAuthorization("CUSTOM", str(name), scopes=scopes)
    return _named_authorization(str(name), scopes, authorizers, resolver, where)


def _named_authorization(
    name: str,
    scopes: tuple[str, ...],
    authorizers: Mapping[str, Any],
    resolver: IntrinsicResolver,
    where: str,
) -> RouteAuthorization:
    """SAM's reserved names (AWS_IAM, NONE) or one of the API's Auth.Authorizers."""
    if name == NO_AUTHORIZER:
        return NO_AUTHORIZATION
    if name == IAM_AUTHORIZER:
        return RouteAuthorization("AWS_IAM", IAM_AUTHORIZER)
    definition = authorizers.get(name)
    if not isinstance(definition, dict):
        known = ", ".join([IAM_AUTHORIZER, NO_AUTHORIZER, *authorizers])
        raise TemplateError(
            f"{where}: authorizer {name!r}: expected one of {known} (the API's Auth.Authorizers)"
        )
    scopes = scopes or _strings(resolver.resolve_value(definition.get("AuthorizationScopes")))
    if "JwtConfiguration" in definition:
        configuration = _jwt_configuration(
            definition["JwtConfiguration"], definition.get("IdentitySource"), resolver
        )
        return RouteAuthorization("JWT", name, configuration, scopes)
    return RouteAuthorization("CUSTOM", name, scopes=scopes)


def _jwt_configuration(
    configuration: Any, identity_source: Any, resolver: IntrinsicResolver
) -> JwtConfiguration:
    """SAM's JwtConfiguration and OpenAPI's jwtConfiguration share the keys issuer and audience."""
    settings = _mapping(configuration)
    try:
        issuer: str | None = resolver.resolve(settings["issuer"]) if "issuer" in settings else None
    except UnresolvedIntrinsicError:
        issuer = None
    try:
        audience = _strings(resolver.resolve_value(settings.get("audience")))
    except UnresolvedIntrinsicError:
        audience = ()
    sources = _strings(resolver.resolve_value(identity_source))
    return JwtConfiguration(
        issuer=issuer or None,
        audience=tuple(a for a in audience if a),
        identity_sources=tuple(
            part.strip() for source in sources for part in source.split(",") if part.strip()
        )
        or (DEFAULT_IDENTITY_SOURCE,),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> tuple[str, ...]:
    """A scalar or a list as strings; absent is empty."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(_scalar(item) for item in value)
    return (_scalar(value),)


def _queue_arn_reference(value: Any, queue_ids: Collection[str], where: str) -> str:
    """The logical id behind `!GetAtt <Queue>.Arn`; the emulator can only create queues it declares."""
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if isinstance(target, list) and len(target) == 2 and target[1] == "Arn" and target[0] in queue_ids:
            return str(target[0])
    raise TemplateError(f"{where}: expected !GetAtt <Queue>.Arn of a queue in this template, got {value!r}")


def _queue_spec(logical_id: str, properties: Mapping[str, Any], queue_ids: Collection[str]) -> QueueSpec:
    attributes = {k: v for k, v in properties.items() if k not in ("RedrivePolicy", "QueueName", "Tags")}
    redrive = properties.get("RedrivePolicy")
    if redrive is None:
        return QueueSpec(logical_id, attributes)
    if not isinstance(redrive, dict) or "maxReceiveCount" not in redrive:
        raise TemplateError(
            f"{logical_id}.RedrivePolicy: expected deadLetterTargetArn and maxReceiveCount, got {redrive!r}"
        )
    dead_letter_queue_id = _queue_arn_reference(
        redrive.get("deadLetterTargetArn"), queue_ids, f"{logical_id}.RedrivePolicy.deadLetterTargetArn"
    )
    return QueueSpec(logical_id, attributes, RedrivePolicy(dead_letter_queue_id, redrive["maxReceiveCount"]))


def _sqs_event_source(
    function: FunctionSpec, event_id: str, properties: Mapping[str, Any], queues: Mapping[str, QueueSpec]
) -> SqsEventSource:
    where = f"{function.logical_id}.{event_id}"
    response_types = properties.get("FunctionResponseTypes") or []
    if not isinstance(response_types, list):
        raise TemplateError(f"{where}.FunctionResponseTypes: expected a list, got {response_types!r}")
    return SqsEventSource(
        function=function,
        event_id=event_id,
        queue_id=_queue_arn_reference(properties.get("Queue"), queues, f"{where}.Queue"),
        batch_size=properties.get("BatchSize", DEFAULT_SQS_BATCH_SIZE),
        maximum_batching_window_seconds=properties.get("MaximumBatchingWindowInSeconds", 0),
        report_batch_item_failures=REPORT_BATCH_ITEM_FAILURES in response_types,
        enabled=properties.get("Enabled", True),
    )


def _event_source_mappings(
    resources: Mapping[str, Any], functions: Mapping[str, FunctionSpec], queues: Mapping[str, QueueSpec]
) -> list[SqsEventSource]:
    """Event source mappings declared as resources (what SAM's SQS events expand to), from a template
    queue to a template function; others (Kinesis, queues outside the stack) are not emulated."""
    found: list[SqsEventSource] = []
    for rid, resource in resources.items():
        if resource.get("Type") != EVENT_SOURCE_MAPPING_TYPE:
            continue
        properties = resource.get("Properties") or {}
        function = properties.get("FunctionName")
        source = properties.get("EventSourceArn")
        function_id = str(function.get("Ref")) if isinstance(function, dict) else ""
        try:
            _queue_arn_reference(source, queues, f"{rid}.EventSourceArn")
        except TemplateError:
            function_id = ""
        if function_id not in functions:
            logger.debug(
                "%s: event source mapping not emulated locally (not a template queue and function)", rid
            )
            continue
        found.append(_sqs_event_source(functions[function_id], rid, {**properties, "Queue": source}, queues))
    return found


def _queue_notifications(
    bucket_id: str, properties: Mapping[str, Any], queues: Mapping[str, QueueSpec]
) -> list[QueueNotification]:
    configurations = (properties.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []
    notifications = []
    for index, configuration in enumerate(configurations):
        where = f"{bucket_id}.NotificationConfiguration.QueueConfigurations[{index}]"
        event = configuration.get("Event")
        if not isinstance(event, str):
            raise TemplateError(
                f"{where}.Event: expected an event name like s3:ObjectCreated:*, got {event!r}"
            )
        rules = ((configuration.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        if not all(isinstance(rule, dict) and {"Name", "Value"} <= set(rule) for rule in rules):
            raise TemplateError(f"{where}.Filter.S3Key.Rules: expected Name and Value in each, got {rules!r}")
        notifications.append(
            QueueNotification(
                bucket_id=bucket_id,
                event=event,
                queue_id=_queue_arn_reference(configuration.get("Queue"), queues, f"{where}.Queue"),
                filter_rules=tuple((str(rule["Name"]), str(rule["Value"])) for rule in rules),
            )
        )
    return notifications


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
    Conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or over parameters) and Fn::If, Fn::GetAtt of the
    attributes the local stack created (a queue's Arn, QueueName, QueueUrl), and Fn::Sub, Fn::Join,
    Fn::Select and Fn::Split over those. Anything else raises UnresolvedIntrinsicError.

    `resources` holds what a Ref returns (a bucket's name, a queue's URL); `attributes` holds
    resource -> attribute -> value for Fn::GetAtt; `conditions` the template's Conditions as written.
    """

    parameters: Mapping[str, str]
    resources: Mapping[str, str] = field(default_factory=dict)
    region: str = DEFAULT_REGION
    account_id: str = "123456789012"
    partition: str = "aws"
    stack_name: str = "maas-local"
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    # Parameters a Ref turns into a list (CommaDelimitedList); elsewhere they read as "a,b".
    list_parameters: frozenset[str] = frozenset()

    @classmethod
    def for_template(
        cls,
        template: SamTemplate,
        overrides: Mapping[str, str] | None = None,
        *,
        resources: Mapping[str, str] | None = None,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
        region: str = DEFAULT_REGION,
    ) -> IntrinsicResolver:
        """The template's parameter values (defaults and the overrides it was read with), then `overrides`."""
        values = dict(template.parameter_values)
        for name, parameter in template.parameters.items():
            if name not in values and parameter.default is not None:
                values[name] = _scalar(parameter.default)
        values.update(overrides or {})
        return cls(
            parameters=values,
            resources=dict(resources or {}),
            region=region,
            attributes={rid: dict(by_name) for rid, by_name in (attributes or {}).items()},
            conditions=dict(template.conditions),
            list_parameters=frozenset(name for name, p in template.parameters.items() if p.is_list),
        )

    def resolve(self, value: Any) -> str:
        """A scalar property's local value as a string; NoValueError when it is AWS::NoValue."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            fn, arg = next(iter(value.items()))
            if fn == "Ref":
                return self._ref(str(arg))
            if fn == "Fn::GetAtt":
                return self._get_att(arg)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::If":
                return self.resolve(self._branch(arg))
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                items = self.resolve_value(arg[1])
                if isinstance(items, list):
                    return str(arg[0]).join(_scalar(item) for item in items)
            if fn == "Fn::Select":
                return _scalar(self._select(arg))
        raise UnresolvedIntrinsicError(f"intrinsic {value!r}: no local value")

    def resolve_value(self, value: Any) -> Any:
        """A structured property with every intrinsic evaluated: Fn::If takes its branch, AWS::NoValue
        drops its key or item (None at the top), a Ref to a list parameter is a list; plain values stay."""
        resolved = self._walk(value, evaluate=True)
        return None if resolved is _NO_VALUE else resolved

    def apply_conditions(self, value: Any) -> Any:
        """`value` as CloudFormation deploys it: each Fn::If replaced by its branch and AWS::NoValue keys and
        items removed (None at the top); every other intrinsic stays for a resolver that knows more."""
        applied = self._walk(value, evaluate=False)
        return None if applied is _NO_VALUE else applied

    def condition(self, name: str) -> bool:
        """Whether the named condition of the template holds for these parameter values."""
        return self._condition(name, ())

    def resolve_number(self, value: Any, default: float) -> float:
        """A numeric property (Timeout, BatchSize ...): its local value, or `default` when it has none."""
        try:
            return float(self.resolve(value))
        except (UnresolvedIntrinsicError, ValueError):
            return default

    def resolve_environment(self, function: FunctionSpec) -> dict[str, str]:
        """Every variable with a local value; ones without are left out and logged, never guessed."""
        resolved: dict[str, str] = {}
        for name, raw in function.environment.items():
            try:
                resolved[name] = self.resolve(raw)
            except NoValueError:
                continue  # CloudFormation leaves the variable out, and so does Lambda
            except UnresolvedIntrinsicError as exc:
                logger.warning("%s: environment variable %s left unset (%s)", function.logical_id, name, exc)
        return resolved

    def _walk(self, value: Any, *, evaluate: bool) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                fn, arg = next(iter(value.items()))
                if fn == "Fn::If":
                    return self._walk(self._branch(arg), evaluate=evaluate)
                if fn == "Ref" and arg == NO_VALUE:
                    return _NO_VALUE
                if evaluate and (fn == "Ref" or fn.startswith("Fn::")):
                    return self._evaluate(fn, arg)
            walked = {key: self._walk(item, evaluate=evaluate) for key, item in value.items()}
            return {key: item for key, item in walked.items() if item is not _NO_VALUE}
        if isinstance(value, list):
            items = [self._walk(item, evaluate=evaluate) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        return value

    def _evaluate(self, fn: str, arg: Any) -> Any:
        """One intrinsic as a structured value: lists stay lists."""
        if fn == "Ref" and arg in self.list_parameters and arg in self.parameters:
            return _list_parameter(self.parameters[str(arg)])
        if fn == "Fn::Split" and isinstance(arg, list) and len(arg) == 2:
            return self.resolve(arg[1]).split(str(arg[0]))
        if fn == "Fn::Select":
            return self._walk(self._select(arg), evaluate=True)
        if fn == "Fn::If":
            return self._walk(self._branch(arg), evaluate=True)
        return self.resolve({fn: arg})

    def _select(self, arg: Any) -> Any:
        if isinstance(arg, list) and len(arg) == 2:
            items = self.resolve_value(arg[1])
            try:
                index = int(self.resolve(arg[0]))
            except ValueError:
                index = -1
            if isinstance(items, list) and 0 <= index < len(items):
                return items[index]
        raise UnresolvedIntrinsicError(f"Fn::Select {arg!r}: expected [index, list] with the index in range")

    def _branch(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise TemplateError(f"Fn::If {arg!r}: expected [condition name, value if true, value if false]")
        return arg[1] if self.condition(arg[0]) else arg[2]

    def _condition(self, name: str, chain: tuple[str, ...]) -> bool:
        if name in chain:
            raise TemplateError(f"Conditions: expected no cycle, got {' -> '.join((*chain, name))}")
        if name not in self.conditions:
            known = ", ".join(self.conditions) or "none"
            raise TemplateError(f"condition {name!r}: expected one of the template's Conditions ({known})")
        return self._holds(self.conditions[name], (*chain, name))

    def _holds(self, expression: Any, chain: tuple[str, ...]) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            fn, arg = next(iter(expression.items()))
            if fn == "Condition":
                return self._condition(str(arg), chain)
            if isinstance(arg, list):
                if fn == "Fn::Equals" and len(arg) == 2:
                    return self._comparable(arg[0]) == self._comparable(arg[1])
                if fn == "Fn::Not" and len(arg) == 1:
                    return not self._holds(arg[0], chain)
                if fn == "Fn::And" and arg:
                    return all(self._holds(item, chain) for item in arg)
                if fn == "Fn::Or" and arg:
                    return any(self._holds(item, chain) for item in arg)
        where = f"condition {chain[-1]}" if chain else "condition"
        raise TemplateError(
            f"{where}: expected Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition, got {expression!r}"
        )

    def _comparable(self, value: Any) -> str | tuple[str, ...]:
        resolved = self.resolve_value(value)
        if isinstance(resolved, list):
            return tuple(_scalar(item) for item in resolved)
        return _scalar(resolved)

    def _ref(self, name: str) -> str:
        if name == NO_VALUE:
            raise NoValueError(f"Ref {NO_VALUE}: the property is left out")
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

    def _get_att(self, arg: Any) -> str:
        target = arg.split(".", 1) if isinstance(arg, str) else arg
        if isinstance(target, list) and len(target) == 2:
            resource, attribute = (str(part) for part in target)
            value = self.attributes.get(resource, {}).get(attribute)
            if value is not None:
                return value
        raise UnresolvedIntrinsicError(f"Fn::GetAtt {arg!r}: no local value")

    def _sub(self, arg: Any) -> str:
        variables: Mapping[str, Any]
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text, variables = arg[0], arg[1]
        else:
            raise UnresolvedIntrinsicError(f"Fn::Sub {arg!r}: expected a string or [string, variables]")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                # Only the variables the text uses: another may have no local value and not matter.
                return self.resolve(variables[name])
            if "." in name:
                return self._get_att(name)
            return self._ref(name)

        return _SUB_VARIABLE.sub(substitute, text)


def _list_parameter(value: str) -> list[str]:
    """A CommaDelimitedList's value as CloudFormation hands it over: an empty value is one empty item."""
    return [item.strip() for item in value.split(",")]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
