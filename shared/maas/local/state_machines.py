"""template.yaml's state machines on the embedded store: created in moto's Step Functions, run here.

moto keeps state machines and executions, StartExecution's name idempotency included (the same name
and input while running is the same execution; a name already used otherwise is
ExecutionAlreadyExists), but runs nothing. So, as Lambda's pollers do for SQS:

- At start every template state machine is created in moto (updated when it exists) with its
  definition as deployed: DefinitionSubstitutions resolved and `${Name}` placeholders replaced. The
  definition is checked whole by maas.local.step_functions first: what it does not interpret fails
  the start, naming the state and field. Nothing else is set: the functions find the ARN through their
  template environment.
- A poller lists RUNNING executions about every 0.2 s and runs each new one on its own thread with
  the interpreter, invoking the template's functions in-process: each invoke takes a free execution
  environment of the function, and there are as many as the Map's concurrency asks, up to the local
  worker cap (`shard_workers`). When the execution ends the runner sets moto's record to SUCCEEDED or
  FAILED with its output or error and cause, through moto's backend in this process: there is no API
  for that.
- With a data folder, each running execution is remembered (state machine, name, input) in
  `store/step-functions.json`, written atomically, until it ends. A stop lets every Task in progress
  finish, starts nothing more and waits a bounded time; at the next start each remembered execution is
  started again with the same name and input, so a job in flight during a stop finishes after the
  restart (the steps are idempotent). `maas serve --reset` forgets them with the rest of the store.
  moto's own Step Functions state is not kept: a name used by an execution that ended before the
  restart can be started again.

One line is logged when an execution starts and one when it ends: names, status and error names, never
the input, output or cause.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from maas.errors import ConfigurationError
from maas.local.cloudformation import IntrinsicResolver, TemplateError, UnresolvedIntrinsicError
from maas.local.lambdas import FunctionEnvironments, function_name_of
from maas.local.sam import StateMachineSpec
from maas.local.step_functions import (
    RESOURCE_NOT_FOUND,
    ExecutionInfo,
    ExecutionInterrupted,
    ExecutionOutcome,
    Interpreter,
    InterpreterOptions,
    LambdaServiceError,
    ObjectReader,
    StateMachineDefinition,
)
from maas.local.store_state import store_folder, write_atomically

# A boto3 Step Functions client (no type stubs for it are installed).
SFNClient = Any

logger = logging.getLogger(__name__)

# `make serve`'s cap on the Map's concurrency (the template asks for up to 10,000 functions at once).
ENV_SHARD_WORKERS = "MAAS_LOCAL_SHARD_WORKERS"
DEFAULT_SHARD_WORKERS = 4
# A factor on every Retry wait (tests: ~0.001); 1 waits what the template says.
ENV_RETRY_INTERVAL_SCALE = "MAAS_LOCAL_RETRY_INTERVAL_SCALE"
STANDARD = "STANDARD"
POLL_INTERVAL_SECONDS = 0.2
# How long stop() waits for executions to reach a state boundary (a Task in progress finishes first).
STOP_WAIT_SECONDS = 30.0
EXECUTIONS_FILE = "step-functions.json"
EXECUTIONS_FORMAT = 1
# moto wants a role; nothing checks what it may do.
LOCAL_ROLE_NAME = "maas-local-state-machine"
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class LocalStateMachine:
    """A template state machine as deployed locally: its name, ARN and checked definition."""

    logical_id: str
    name: str
    arn: str
    definition: StateMachineDefinition

    @property
    def definition_json(self) -> str:
        return json.dumps(self.definition.document, separators=(",", ":"))


def state_machine_arn(name: str, region: str, account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:states:{region}:{account_id}:stateMachine:{name}"


def state_machine_name(spec: StateMachineSpec, resolver: IntrinsicResolver) -> str:
    """Its Name (StateMachineName); without one CloudFormation generates one, the local stack uses the
    logical id."""
    if spec.name is None:
        return spec.logical_id
    try:
        return resolver.resolve(spec.name)
    except UnresolvedIntrinsicError as exc:
        raise TemplateError(f"{spec.logical_id}.Name: {exc}") from None


def state_machine_references(
    specs: Iterable[StateMachineSpec], resolver: IntrinsicResolver
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """What `!Ref <StateMachine>` (its ARN) and `!GetAtt <StateMachine>.Arn / .Name` resolve to locally."""
    references: dict[str, str] = {}
    attributes: dict[str, dict[str, str]] = {}
    for spec in specs:
        name = state_machine_name(spec, resolver)
        arn = state_machine_arn(name, resolver.region, resolver.account_id, resolver.partition)
        references[spec.logical_id] = arn
        attributes[spec.logical_id] = {"Arn": arn, "Name": name}
    return references, attributes


def local_state_machine(spec: StateMachineSpec, resolver: IntrinsicResolver) -> LocalStateMachine:
    """The state machine as CloudFormation would deploy it with these values; TemplateError names what
    has no local value, and DefinitionError what the interpreter does not run."""
    kind = _resolved(resolver, spec.type, f"{spec.logical_id}.Type")
    if kind != STANDARD:
        raise TemplateError(
            f"{spec.logical_id}.Type: only {STANDARD} state machines run locally, got {kind!r}"
        )
    substitutions = {
        key: _resolved(resolver, value, f"{spec.logical_id}.DefinitionSubstitutions.{key}")
        for key, value in spec.substitutions.items()
    }
    definition: Any = spec.definition
    if definition is None:  # a DefinitionString, maybe built by an intrinsic
        text = _resolved(resolver, spec.definition_string, f"{spec.logical_id}.DefinitionString")
        try:
            definition = json.loads(text)
        except ValueError as exc:
            raise TemplateError(f"{spec.logical_id}.DefinitionString: expected JSON ({exc})") from None
    substituted = substitute_placeholders(definition, substitutions, spec.logical_id)
    name = state_machine_name(spec, resolver)
    return LocalStateMachine(
        logical_id=spec.logical_id,
        name=name,
        arn=state_machine_arn(name, resolver.region, resolver.account_id, resolver.partition),
        definition=StateMachineDefinition(substituted, name=spec.logical_id),
    )


def _resolved(resolver: IntrinsicResolver, value: Any, where: str) -> str:
    try:
        return resolver.resolve(value)
    except UnresolvedIntrinsicError as exc:
        raise TemplateError(f"{where}: {exc}") from None


def substitute_placeholders(value: Any, substitutions: Mapping[str, str], owner: str) -> Any:
    """`value` with each `${Name}` in its strings replaced by DefinitionSubstitutions' Name, as
    CloudFormation does; a placeholder with no substitution fails, as it does at deploy time."""
    if isinstance(value, dict):
        return {key: substitute_placeholders(item, substitutions, owner) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_placeholders(item, substitutions, owner) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            known = ", ".join(substitutions) or "none"
            raise TemplateError(
                f"{owner}.Definition: ${{{name}}} has no DefinitionSubstitutions entry (known: {known})"
            )
        return substitutions[name]

    return _PLACEHOLDER.sub(replace, value)


class LocalLambdaInvoker:
    """The interpreter's lambda:invoke: a function name or ARN (an alias's too) to a free execution
    environment of that template function."""

    def __init__(self, environments: Mapping[str, FunctionEnvironments]) -> None:
        self._environments = dict(environments)

    def __contains__(self, function: object) -> bool:
        return isinstance(function, str) and function_name_of(function) in self._environments

    def __call__(self, function: str, event: Any) -> Any:
        name = function_name_of(function)
        if name not in self._environments:
            raise LambdaServiceError(
                RESOURCE_NOT_FOUND,
                f"Function not found: {function} (the template's: {', '.join(self._environments)})",
            )
        return self._environments[name].invoke(event)


def check_functions(machines: Iterable[LocalStateMachine], invoker: LocalLambdaInvoker) -> None:
    """Every literal FunctionName must be a template function: a typo fails the start, not a job."""
    for machine in machines:
        for state, function in machine.definition.lambda_functions():
            if function not in invoker:
                raise TemplateError(
                    f"state machine {machine.logical_id}: state {state}: FunctionName {function} is not a "
                    "function of the template"
                )


@dataclass(frozen=True, slots=True)
class RememberedExecution:
    state_machine: str
    name: str
    input: str


class RememberedExecutions:
    """The executions running now, in a JSON file of the data folder, so a restart can start them again."""

    def __init__(self, data_dir: Path) -> None:
        self.path = store_folder(data_dir) / EXECUTIONS_FILE
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], RememberedExecution] = {}

    def load(self) -> list[RememberedExecution]:
        """What the last run left; an unreadable file is reported and forgotten, never guessed at."""
        with self._lock:
            try:
                document = json.loads(self.path.read_text())
                found = [RememberedExecution(**item) for item in document["executions"]]
            except FileNotFoundError:
                found = []
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("%s: unreadable (%s); no execution restarts", self.path, type(exc).__name__)
                found = []
            self._running = {(item.state_machine, item.name): item for item in found}
            return found

    def add(self, execution: RememberedExecution) -> None:
        with self._lock:
            self._running[(execution.state_machine, execution.name)] = execution
            self._save()

    def remove(self, state_machine: str, name: str) -> None:
        with self._lock:
            if self._running.pop((state_machine, name), None) is not None:
                self._save()

    def _save(self) -> None:
        document = {
            "format": EXECUTIONS_FORMAT,
            "executions": [
                {"state_machine": e.state_machine, "name": e.name, "input": e.input}
                for e in self._running.values()
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(document, indent=1).encode())


class StateMachineRunner:
    """Creates the state machines in the embedded store and runs their executions (module docstring)."""

    def __init__(
        self,
        machines: Sequence[LocalStateMachine],
        *,
        sfn: SFNClient,
        invoke: LocalLambdaInvoker,
        read_object: ObjectReader,
        max_concurrency: int = DEFAULT_SHARD_WORKERS,
        retry_interval_scale: float = 1.0,
        data_dir: Path | None = None,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
    ) -> None:
        self.machines = {machine.arn: machine for machine in machines}
        self._sfn = sfn
        self._stop = threading.Event()
        self.options = InterpreterOptions(
            max_concurrency=max_concurrency, retry_interval_scale=retry_interval_scale, stop=self._stop
        )
        self._interpreters = {
            arn: Interpreter(machine.definition, invoke=invoke, read_object=read_object, options=self.options)
            for arn, machine in self.machines.items()
        }
        check_functions(machines, invoke)
        self._remembered = RememberedExecutions(data_dir) if data_dir is not None else None
        self._poll_interval = poll_interval_seconds
        self._seen: set[str] = set()
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None

    def start(self) -> StateMachineRunner:
        for machine in self.machines.values():
            self._create_or_update(machine)
        self._restart_remembered()
        self._poller = threading.Thread(target=self._poll, name="maas-sfn-poller", daemon=True)
        self._poller.start()
        return self

    def request_stop(self) -> None:
        """Start nothing more; running executions stop at their next state boundary or retry wait."""
        self._stop.set()

    def stop(self, wait_seconds: float = STOP_WAIT_SECONDS) -> None:
        self.request_stop()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.join()
        deadline = time.monotonic() + wait_seconds
        with self._lock:
            running = dict(self._running)
        for arn, thread in running.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(
                    "execution %s: still in a Task at shutdown; it restarts with the stack when it is "
                    "remembered in a data folder",
                    arn.rsplit(":", 1)[-1],
                )

    def _create_or_update(self, machine: LocalStateMachine) -> None:
        role = f"arn:aws:iam::{machine.arn.split(':')[4]}:role/{LOCAL_ROLE_NAME}"
        try:
            self._sfn.create_state_machine(
                name=machine.name, definition=machine.definition_json, roleArn=role, type=STANDARD
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "StateMachineAlreadyExists":
                raise
        # moto answers a second create with the existing machine, unchanged: the definition is today's.
        self._sfn.update_state_machine(
            stateMachineArn=machine.arn, definition=machine.definition_json, roleArn=role
        )
        logger.debug("state machine %s: %s", machine.logical_id, machine.arn)

    def _restart_remembered(self) -> None:
        if self._remembered is None:
            return
        by_name = {machine.name: machine for machine in self.machines.values()}
        for execution in self._remembered.load():
            machine = by_name.get(execution.state_machine)
            if machine is None:
                logger.warning(
                    "execution %s: state machine %s is no longer in the template; not restarted",
                    execution.name,
                    execution.state_machine,
                )
                self._remembered.remove(execution.state_machine, execution.name)
                continue
            try:
                self._sfn.start_execution(
                    stateMachineArn=machine.arn, name=execution.name, input=execution.input
                )
            except ClientError as exc:
                logger.warning("execution %s: not restarted (%s)", execution.name, exc)
                self._remembered.remove(execution.state_machine, execution.name)
                continue
            logger.info(
                "%s: execution %s restarts (it was running at the last stop)", machine.name, execution.name
            )

    def _poll(self) -> None:
        failures_in_a_row = 0
        while not self._stop.wait(self._poll_interval):
            try:
                for arn in self.machines:
                    self._start_new(arn)
                failures_in_a_row = 0
            except Exception as exc:
                if self._stop.is_set():
                    return
                failures_in_a_row += 1
                if failures_in_a_row == 1:  # once per outage
                    logger.warning("cannot list the state machines' executions (%s); retrying", exc)

    def _start_new(self, machine_arn: str) -> None:
        paginator = self._sfn.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=machine_arn, statusFilter="RUNNING"):
            for listed in page["executions"]:
                arn = listed["executionArn"]
                with self._lock:
                    if arn in self._seen or self._stop.is_set():
                        continue
                    self._seen.add(arn)
                    thread = threading.Thread(
                        target=self._run,
                        args=(machine_arn, arn),
                        name=f"maas-sfn-{listed['name']}",
                        daemon=True,
                    )
                    self._running[arn] = thread
                thread.start()

    def _run(self, machine_arn: str, arn: str) -> None:
        machine = self.machines[machine_arn]
        try:
            described = self._sfn.describe_execution(executionArn=arn)
            name, text = described["name"], described["input"]
            if self._remembered is not None:
                self._remembered.add(RememberedExecution(machine.name, name, text))
            logger.info("%s: execution %s started", machine.name, name)
            started = time.monotonic()
            info = ExecutionInfo(
                execution_arn=arn,
                name=name,
                state_machine_arn=machine.arn,
                state_machine_name=machine.name,
                start_time=described["startDate"],
            )
            try:
                outcome = self._interpreters[machine_arn].run(info, json.loads(text))
            except ExecutionInterrupted:
                outcome = None
            except Exception as exc:
                logger.exception("%s: execution %s: the local interpreter failed", machine.name, name)
                outcome = ExecutionOutcome(
                    "FAILED", error="States.Runtime", cause=f"local interpreter: {exc!r}"
                )
            if outcome is None or (outcome.status == "FAILED" and self._stop.is_set()):
                # Stopped mid-way (a failure during the stop may be the stop's own doing): neither
                # succeeded nor failed; a remembered execution starts again with the stack.
                logger.info("%s: execution %s interrupted by the stop", machine.name, name)
                return
            _record_outcome(arn, outcome)
            if self._remembered is not None:
                self._remembered.remove(machine.name, name)
            logger.info(
                "%s: execution %s %s in %.1fs%s",
                machine.name,
                name,
                outcome.status,
                time.monotonic() - started,
                f" ({outcome.error})" if outcome.error else "",
            )
        finally:
            with self._lock:
                self._running.pop(arn, None)


def _record_outcome(execution_arn: str, outcome: ExecutionOutcome) -> None:
    """Set moto's record of the execution to how it ended (unless it was stopped meanwhile): moto has no
    API for it, and its server runs in this process."""
    from moto.core.utils import utcnow
    from moto.stepfunctions.models import stepfunctions_backends

    _, _, _, region, account, *_ = execution_arn.split(":")
    execution = stepfunctions_backends[account][region].describe_execution(execution_arn)
    if execution.status != "RUNNING":
        logger.info("execution %s: %s meanwhile; kept so", execution.name, execution.status)
        return
    if outcome.status == "SUCCEEDED":
        execution.output = json.dumps(outcome.output)
    else:
        execution.error = outcome.error
        execution.cause = outcome.cause
    execution.stop_date = utcnow()
    execution.status = outcome.status


def shard_workers_from_environment(environ: Mapping[str, str]) -> int:
    """MAAS_LOCAL_SHARD_WORKERS, or the default when unset or empty."""
    text = environ.get(ENV_SHARD_WORKERS, "").strip()
    if not text:
        return DEFAULT_SHARD_WORKERS
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"{ENV_SHARD_WORKERS}: expected a whole number >= 1, got {text!r}")
    return int(text)


def retry_interval_scale_from_environment(environ: Mapping[str, str]) -> float:
    """MAAS_LOCAL_RETRY_INTERVAL_SCALE, or 1 when unset or empty."""
    text = environ.get(ENV_RETRY_INTERVAL_SCALE, "").strip()
    if not text:
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        scale = -1.0
    if not scale >= 0:
        raise ConfigurationError(f"{ENV_RETRY_INTERVAL_SCALE}: expected a number >= 0, got {text!r}")
    return scale
