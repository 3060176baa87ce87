"""Reads template.yaml, the single source of truth for routes, queues and function settings.

The local stack serves exactly what SAM deploys: HttpApi events become routes, SQS events become
pollers, AWS::SQS::Queue resources become queues and a bucket's QueueConfigurations become its
notifications. Globals merge under each function, and CloudFormation intrinsics stay as
{"Ref": ...} / {"Fn::Sub": ...} dicts until an `IntrinsicResolver` that knows the local stack's
values turns them into strings. Event types the emulator does not run (Schedule, ...) are skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maas.errors import ConfigurationError

logger = logging.getLogger(__name__)

ANY_METHOD = "ANY"
DEFAULT_ROUTE = "$default"
FUNCTION_TYPE = "AWS::Serverless::Function"
QUEUE_TYPE = "AWS::SQS::Queue"
BUCKET_TYPE = "AWS::S3::Bucket"
HTTP_API_EVENT = "HttpApi"
SQS_EVENT = "SQS"
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
# Lambda's defaults for an SQS event source mapping, and SQS's own for a queue.
DEFAULT_SQS_BATCH_SIZE = 10
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 30
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
    queue_ids = [
        rid for rid, res in resources.items() if isinstance(res, dict) and res.get("Type") == QUEUE_TYPE
    ]
    queues = {rid: _queue_spec(rid, resources[rid].get("Properties") or {}, queue_ids) for rid in queue_ids}
    routes: list[Route] = []
    sqs_event_sources: list[SqsEventSource] = []
    for rid, spec in functions.items():
        events = (resources[rid].get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items():
            if not isinstance(event, dict):
                continue
            if event.get("Type") == HTTP_API_EVENT:
                routes.append(_route(spec, event_id, event.get("Properties") or {}))
            elif event.get("Type") == SQS_EVENT:
                sqs_event_sources.append(
                    _sqs_event_source(spec, event_id, event.get("Properties") or {}, queues)
                )
            else:
                logger.debug("%s.%s: %s events are not emulated locally", rid, event_id, event.get("Type"))
    _reject_duplicate_routes(routes)
    notifications = [
        notification
        for rid, res in resources.items()
        if isinstance(res, dict) and res.get("Type") == BUCKET_TYPE
        for notification in _queue_notifications(rid, res.get("Properties") or {}, queues)
    ]
    parameters = {
        name: TemplateParameter(name=name, type=str(p.get("Type", "String")), default=p.get("Default"))
        for name, p in (document.get("Parameters") or {}).items()
    }
    template = SamTemplate(
        parameters=parameters,
        resources=resources,
        functions=functions,
        routes=tuple(routes),
        queues=queues,
        sqs_event_sources=tuple(sqs_event_sources),
        queue_notifications=tuple(notifications),
    )
    template.queues_in_creation_order()  # a redrive cycle is a template error, found at load time
    return template


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
    Fn::GetAtt of the attributes the local stack created (a queue's Arn, QueueName, QueueUrl), and
    Fn::Sub and Fn::Join over those. Anything else raises UnresolvedIntrinsicError.

    `resources` holds what a Ref returns (a bucket's name, a queue's URL); `attributes` holds
    resource -> attribute -> value for Fn::GetAtt.
    """

    parameters: Mapping[str, str]
    resources: Mapping[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    partition: str = "aws"
    stack_name: str = "maas-local"
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def for_template(
        cls,
        template: SamTemplate,
        overrides: Mapping[str, str] | None = None,
        *,
        resources: Mapping[str, str] | None = None,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
        region: str = "us-east-1",
    ) -> IntrinsicResolver:
        """Parameter defaults from the template, with explicit overrides on top."""
        values = {n: _scalar(p.default) for n, p in template.parameters.items() if p.default is not None}
        values.update(overrides or {})
        return cls(
            parameters=values,
            resources=dict(resources or {}),
            region=region,
            attributes={rid: dict(by_name) for rid, by_name in (attributes or {}).items()},
        )

    def resolve(self, value: Any) -> str:
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
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
                return str(arg[0]).join(self.resolve(item) for item in arg[1])
        raise UnresolvedIntrinsicError(f"intrinsic {value!r}: no local value")

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

    def _get_att(self, arg: Any) -> str:
        target = arg.split(".", 1) if isinstance(arg, str) else arg
        if isinstance(target, list) and len(target) == 2:
            resource, attribute = (str(part) for part in target)
            value = self.attributes.get(resource, {}).get(attribute)
            if value is not None:
                return value
        raise UnresolvedIntrinsicError(f"Fn::GetAtt {arg!r}: no local value")

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
            if "." in name:
                return self._get_att(name)
            return self._ref(name)

        return _SUB_VARIABLE.sub(substitute, text)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
