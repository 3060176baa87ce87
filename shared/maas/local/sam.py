"""The SAM model the local stack runs: functions, HTTP routes and their authorization, queues, SQS event
sources, bucket notifications and state machines, as template.yaml declares them.

These are plain values with intrinsics unresolved (a Timeout may still be {"Ref": ...}); reading them
from template.yaml is maas.local.template_reader's, and deciding a route's authorization is
maas.local.sam_authorization's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from maas.local.cloudformation import TemplateError, TemplateParameter

ANY_METHOD = "ANY"
DEFAULT_ROUTE = "$default"
BUCKET_TYPE = "AWS::S3::Bucket"
# Lambda's defaults for an SQS event source mapping, and SQS's own for a queue.
DEFAULT_SQS_BATCH_SIZE = 10
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 30
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
DEFAULT_IDENTITY_SOURCE = "$request.header.Authorization"


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
    # AutoPublishAlias: `!Ref <Function>.Alias` is that alias's ARN.
    auto_publish_alias: Any = None

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
class TemplateRoute:
    """One API route: `method` is a verb or ANY, `path` a pattern like /v2/models/{name} or $default.

    Most are HTTP API routes (a function's HttpApi events). `streaming` marks a route of a REST API whose
    Lambda proxy integration streams the function's answer (responseTransferMode STREAM, the
    response-streaming-invocations URI): its function gets a REST (payload 1.0) event and answers through
    its `stream_handler` (see maas.local.rest_api_routes)."""

    method: str
    path: str
    function: FunctionSpec
    event_id: str
    api_id: str | None = None
    authorization: RouteAuthorization = NO_AUTHORIZATION
    streaming: bool = False

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
class StateMachineSpec:
    """An AWS::Serverless::StateMachine (or AWS::StepFunctions::StateMachine) with its Definition inline.

    `name` and `substitutions` (DefinitionSubstitutions) may hold unresolved intrinsics; `definition` is
    the Definition mapping, checked, with its `${Name}` placeholders; without one, `definition_string` is
    CloudFormation's DefinitionString (text, or an intrinsic that builds it), checked when the stack
    resolves it. `name` None: CloudFormation would generate one."""

    logical_id: str
    resource_type: str
    name: Any
    type: Any
    definition: Mapping[str, Any] | None
    substitutions: Mapping[str, Any] = field(default_factory=dict)
    definition_string: Any = None


@dataclass(frozen=True, slots=True)
class SamTemplate:
    """What the local stack needs from template.yaml."""

    parameters: Mapping[str, TemplateParameter]
    resources: Mapping[str, Mapping[str, Any]]
    functions: Mapping[str, FunctionSpec]
    routes: tuple[TemplateRoute, ...]
    queues: Mapping[str, QueueSpec] = field(default_factory=dict)
    sqs_event_sources: tuple[SqsEventSource, ...] = ()
    queue_notifications: tuple[QueueNotification, ...] = ()
    # Defaults with the overrides it was read with on top; Conditions as written (already applied).
    parameter_values: Mapping[str, str] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    state_machines: Mapping[str, StateMachineSpec] = field(default_factory=dict)

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
