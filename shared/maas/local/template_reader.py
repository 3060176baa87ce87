"""Reads template.yaml, the single source of truth for routes, queues and function settings.

The local stack serves exactly what SAM deploys: HttpApi events become routes (and so do a REST API's
streaming integrations, see maas.local.rest_api_routes), SQS events become pollers, AWS::SQS::Queue
resources become queues and a bucket's QueueConfigurations become its notifications. Globals merge
under each function. The parameter values are known when the template is read, so Conditions decide
then which resources exist (see maas.local.cloudformation), and each route gets the authorization API
Gateway would enforce on it (see maas.local.sam_authorization). A state machine's inline Definition is
checked here, whole, against what maas.local.step_functions interprets: a template the local stack
would run differently from AWS fails to load.
Event types the emulator does not run (Schedule, ...) are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from maas.local.cloudformation import (
    DEFAULT_REGION,
    IntrinsicResolver,
    TemplateError,
    declared_parameters,
    deployed_resources,
    parameter_values,
    with_conditions_applied,
)
from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from maas.local.rest_api_routes import streaming_routes
from maas.local.sam import (
    ANY_METHOD,
    BUCKET_TYPE,
    DEFAULT_MEMORY_MB,
    DEFAULT_ROUTE,
    DEFAULT_SQS_BATCH_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    FunctionSpec,
    QueueNotification,
    QueueSpec,
    RedrivePolicy,
    SamTemplate,
    SqsEventSource,
    StateMachineSpec,
    TemplateRoute,
)
from maas.local.sam_authorization import route_authorization
from maas.local.step_functions import StateMachineDefinition

logger = logging.getLogger(__name__)

TEMPLATE_FILE = "template.yaml"
FUNCTION_TYPE = "AWS::Serverless::Function"
QUEUE_TYPE = "AWS::SQS::Queue"
EVENT_SOURCE_MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
ALIAS_REFERENCE = ".Alias"
HTTP_API_TYPE = "AWS::Serverless::HttpApi"
HTTP_API_EVENT = "HttpApi"
SQS_EVENT = "SQS"
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", ANY_METHOD})
SERVERLESS_STATE_MACHINE_TYPE = "AWS::Serverless::StateMachine"
STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"


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
    declared = declared_parameters(document.get("Parameters") or {})
    values = parameter_values(declared, parameters or {})
    resolver = IntrinsicResolver(
        parameters=values,
        region=region,
        conditions=conditions,
        list_parameters=frozenset(name for name, p in declared.items() if p.is_list),
    )
    resources = deployed_resources(written_resources, resolver)
    globals_ = with_conditions_applied(document.get("Globals") or {}, resolver, "Globals")
    global_function = globals_.get("Function") or {}
    functions = {
        rid: _function_spec(rid, res.get("Properties") or {}, global_function)
        for rid, res in resources.items()
        if res.get("Type") == FUNCTION_TYPE
    }
    queue_ids = [rid for rid, res in resources.items() if res.get("Type") == QUEUE_TYPE]
    queues = {rid: _queue_spec(rid, resources[rid].get("Properties") or {}, queue_ids) for rid in queue_ids}
    apis = _http_apis(resources, globals_.get("HttpApi") or {})
    routes: list[TemplateRoute] = []
    sqs_event_sources: list[SqsEventSource] = []
    for rid, spec in functions.items():
        events = (resources[rid].get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items():
            if not isinstance(event, dict):
                continue
            if event.get("Type") == HTTP_API_EVENT:
                properties = event.get("Properties") or {}
                route = _route(spec, event_id, properties)
                authorization = route_authorization(route, properties, apis.get(route.api_id) or {}, resolver)
                routes.append(replace(route, authorization=authorization))
            elif event.get("Type") == SQS_EVENT:
                sqs_event_sources.append(
                    _sqs_event_source(spec, event_id, event.get("Properties") or {}, queues)
                )
            else:
                logger.debug("%s.%s: %s events are not emulated locally", rid, event_id, event.get("Type"))
    sqs_event_sources.extend(_event_source_mappings(resources, functions, queues))
    routes.extend(streaming_routes(resources, functions, resolver))
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
        state_machines={
            rid: _state_machine_spec(rid, res)
            for rid, res in resources.items()
            if res.get("Type") in (SERVERLESS_STATE_MACHINE_TYPE, STATE_MACHINE_TYPE)
        },
    )
    template.queues_in_creation_order()  # a redrive cycle is a template error, found at load time
    return template


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
        auto_publish_alias=merged.get("AutoPublishAlias"),
    )


def _state_machine_spec(logical_id: str, resource: Mapping[str, Any]) -> StateMachineSpec:
    """A state machine with an inline definition (SAM's Definition, CloudFormation's Definition or
    DefinitionString), its definition checked now when it is written inline."""
    properties = resource.get("Properties") or {}
    serverless = resource.get("Type") == SERVERLESS_STATE_MACHINE_TYPE
    for external in ("DefinitionUri", "DefinitionS3Location"):
        if external in properties:
            raise TemplateError(
                f"{logical_id}.{external}: the local stack runs inline definitions only (Definition)"
            )
    definition = properties.get("Definition")
    definition_string = None if serverless else properties.get("DefinitionString")
    if definition is None and definition_string is None:
        raise TemplateError(f"{logical_id}: expected an inline Definition")
    if definition is not None and not isinstance(definition, dict):
        raise TemplateError(f"{logical_id}.Definition: expected a mapping, got {definition!r}")
    substitutions = properties.get("DefinitionSubstitutions") or {}
    if not isinstance(substitutions, dict):
        raise TemplateError(
            f"{logical_id}.DefinitionSubstitutions: expected a mapping, got {substitutions!r}"
        )
    if isinstance(definition, dict):
        intrinsic = _first_intrinsic(definition)
        if intrinsic is not None:
            raise TemplateError(
                f"{logical_id}.Definition: intrinsic {intrinsic} inside the definition is not resolved "
                "locally; pass the value through DefinitionSubstitutions and write ${Name}"
            )
        StateMachineDefinition(definition, name=logical_id)
    return StateMachineSpec(
        logical_id=logical_id,
        resource_type=str(resource.get("Type")),
        name=properties.get("Name" if serverless else "StateMachineName"),
        type=properties.get("Type" if serverless else "StateMachineType", "STANDARD"),
        definition=definition,
        substitutions=substitutions,
        definition_string=definition_string,
    )


def _first_intrinsic(value: Any) -> str | None:
    if isinstance(value, dict):
        if len(value) == 1:
            (key,) = value
            if key == "Ref" or str(key).startswith("Fn::"):
                return str(key)
        found = (_first_intrinsic(item) for item in value.values())
    elif isinstance(value, list):
        found = (_first_intrinsic(item) for item in value)
    else:
        return None
    return next((name for name in found if name is not None), None)


def _route(function: FunctionSpec, event_id: str, properties: Mapping[str, Any]) -> TemplateRoute:
    path = properties.get("Path")
    method = properties.get("Method")
    api = properties.get("ApiId")
    api_id = api.get("Ref") if isinstance(api, dict) else None
    if path is None and method is None:
        return TemplateRoute(ANY_METHOD, DEFAULT_ROUTE, function, event_id, api_id)
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
    return TemplateRoute(verb, path, function, event_id, api_id)


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
        # `!Ref <Function>.Alias` (SAM's reference to the AutoPublishAlias alias) invokes that function too.
        function_id = (
            str(function.get("Ref")).removesuffix(ALIAS_REFERENCE) if isinstance(function, dict) else ""
        )
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


def _reject_duplicate_routes(routes: list[TemplateRoute]) -> None:
    seen: dict[tuple[str | None, str], str] = {}
    for route in routes:
        key = (route.api_id, route.route_key)
        where = f"{route.function_id}.{route.event_id}"
        if key in seen:
            raise TemplateError(f"route {route.route_key!r} is declared twice: {seen[key]} and {where}")
        seen[key] = where
