"""A small Amazon States Language interpreter (JSONPath flavour): the state machines of template.yaml, run
in-process against the local functions.

Only what the template uses is interpreted, and a definition is checked whole when it is loaded: any
other state type, field, Resource, path syntax or intrinsic function raises `DefinitionError` naming the
state and the field, so template.yaml and the local stack cannot drift apart silently. Supported:

- top level: StartAt, States, Comment, Version, QueryLanguage JSONPath;
- Task with Resource arn:aws:states:::lambda:invoke (Parameters FunctionName and Payload, `.$` allowed),
  and InputPath, Parameters, ResultSelector, ResultPath (null too), OutputPath, Retry, Catch, Next/End;
  the result is the integration's {"ExecutedVersion", "Payload", "StatusCode"}; a handler's exception
  is Error = its class name, Cause = the JSON text Lambda's Python runtime reports
  ({"errorMessage", "errorType", "stackTrace"});
- Map with ItemProcessor (ProcessorConfig Mode INLINE or DISTRIBUTED, ExecutionType), ItemReader
  arn:aws:states:::s3:getObject with ReaderConfig InputType JSON (and MaxItems), ItemsPath (inline),
  ItemSelector (with $$.Map.Item.Index/Value), MaxConcurrency / MaxConcurrencyPath (0: unlimited; both
  capped by the local worker cap), ToleratedFailureCount / ToleratedFailurePercentage (distributed),
  Label, and the Task fields above except Resource and Parameters. A failed item fails an inline Map
  with its own error; a distributed Map past its tolerated failures stops starting items and fails with
  States.ExceedToleratedFailureThreshold;
- Choice (Variable with String*/Numeric*/Boolean* comparisons and their *Path forms, StringMatches,
  IsPresent, IsNull, IsNumeric, IsString, IsBoolean; And, Or, Not; Default), Pass (Result, Parameters,
  ResultPath), Succeed, Fail (Error, Cause);
- Retry: ErrorEquals (States.ALL, States.TaskFailed, names), IntervalSeconds, MaxAttempts, BackoffRate,
  MaxDelaySeconds, JitterStrategy FULL/NONE; the first retrier whose ErrorEquals matches decides, as in
  AWS. Catch: ErrorEquals, ResultPath, Next. States.Runtime (a path that selects nothing) is neither
  retried nor caught: it fails the execution, as in AWS;
- the payload quota: state data is at most 256 KiB (262,144 bytes of JSON as UTF-8). A Task's input after
  Parameters, the integration's result, a Map's array of its items' outputs (before ResultSelector and
  ResultPath, so even ResultPath null does not spare it), an item's input and every state's output are
  measured; past the quota the state fails with States.DataLimitExceeded, which, like States.Runtime, no
  Retry or Catch takes (States.ALL excludes it), so the execution fails. A distributed Map's item that
  fails so is a failed item, counted against the Map's tolerated failures.

Refused: Parallel, Wait, timeouts and heartbeats (TimeoutSeconds, HeartbeatSeconds), JSONata,
variables (Assign), ResultWriter, ItemBatcher, the legacy Map fields Iterator and Parameters, any
other Resource, Timestamp comparisons and the intrinsic functions (States.Format ...).

Local departures: retry waits are multiplied by `InterpreterOptions.retry_interval_scale` (tests use
~0.001); Map concurrency is at most `InterpreterOptions.max_concurrency`; a distributed Map's items run
in this execution (their $$.Execution is the parent's).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from maas.local.asl_paths import (
    JsonPath,
    PathNotFound,
    PathSyntaxError,
    check_template,
    expand_template,
    reference_path,
    select,
    with_result,
)
from maas.local.cloudformation import TemplateError

logger = logging.getLogger(__name__)

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
S3_GET_OBJECT = "arn:aws:states:::s3:getObject"
_SERVICE_RESOURCE = re.compile(r"arn:aws[a-z-]*:states:::(.+)")

STATES_ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
# Errors no Retry or Catch takes, whatever its ErrorEquals says: the execution fails.
TERMINAL_ERRORS = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})
TIMEOUT = "States.Timeout"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
EXCEED_TOLERATED_FAILURE = "States.ExceedToleratedFailureThreshold"
ITEM_READER_FAILED = "States.ItemReaderFailed"
EXCEED_TOLERATED_FAILURE_CAUSE = "The specified tolerated failure threshold was exceeded"
MARSHAL_ERROR = "Runtime.MarshalError"
RESOURCE_NOT_FOUND = "Lambda.ResourceNotFoundException"

# Step Functions' Retry defaults.
DEFAULT_INTERVAL_SECONDS = 1
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_RATE = 2.0
DEFAULT_MAP_WORKERS = 4
# Step Functions' quota on a state's input, output and a task's result: 256 KiB of UTF-8 text.
PAYLOAD_LIMIT_BYTES = 262_144

_COMMON = frozenset({"Type", "Comment"})
_IO = frozenset({"InputPath", "OutputPath"})
_TRANSITION = frozenset({"Next", "End"})
_RESULT = frozenset({"ResultSelector", "ResultPath", "Retry", "Catch"})
STATE_FIELDS: Mapping[str, frozenset[str]] = {
    "Task": _COMMON | _IO | _TRANSITION | _RESULT | {"Resource", "Parameters"},
    "Map": _COMMON
    | _IO
    | _TRANSITION
    | _RESULT
    | {
        "ItemProcessor",
        "ItemReader",
        "ItemsPath",
        "ItemSelector",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailureCount",
        "ToleratedFailurePercentage",
        "Label",
    },
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Pass": _COMMON | _IO | _TRANSITION | {"Result", "ResultPath", "Parameters"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "Cause"},
}
TOP_LEVEL_FIELDS = frozenset({"StartAt", "States", "Comment", "Version", "QueryLanguage"})
PROCESSOR_FIELDS = frozenset({"ProcessorConfig", "StartAt", "States", "Comment"})
RETRIER_FIELDS = frozenset(
    {
        "ErrorEquals",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "MaxDelaySeconds",
        "JitterStrategy",
        "Comment",
    }
)
CATCHER_FIELDS = frozenset({"ErrorEquals", "Next", "ResultPath", "Comment"})
LAMBDA_PARAMETERS = frozenset({"FunctionName", "Payload"})
READER_PARAMETERS = frozenset({"Bucket", "Key"})
_HINTS = {
    "Iterator": "write ItemProcessor (Iterator is its legacy name)",
    "Parameters": "write ItemSelector (Parameters is its legacy name in a Map)",
    "TimeoutSeconds": "timeouts are not emulated locally",
    "HeartbeatSeconds": "heartbeats are not emulated locally",
}

_STRING_COMPARISONS: Mapping[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda a, b: a == b,
    "StringLessThan": lambda a, b: a < b,
    "StringGreaterThan": lambda a, b: a > b,
    "StringLessThanEquals": lambda a, b: a <= b,
    "StringGreaterThanEquals": lambda a, b: a >= b,
}
_NUMERIC_COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    "NumericEquals": lambda a, b: a == b,
    "NumericLessThan": lambda a, b: a < b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericLessThanEquals": lambda a, b: a <= b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_TESTS: Mapping[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _is_number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
}
_COMBINATORS = ("And", "Or", "Not")


def _comparison_operators() -> frozenset[str]:
    names = {*_STRING_COMPARISONS, *_NUMERIC_COMPARISONS, "BooleanEquals"}
    return frozenset(names | {f"{name}Path" for name in names} | {"StringMatches", "IsPresent", *_TYPE_TESTS})


COMPARISON_OPERATORS = _comparison_operators()


class DefinitionError(TemplateError):
    """A state machine definition the local interpreter does not run as written (HTTP 500): it names the
    state and the field, so the template or the interpreter is fixed, not the local run silently wrong."""


class StatesError(Exception):
    """A failure as Step Functions routes it through Retry and Catch: an error name and a cause."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause

    def as_output(self) -> dict[str, str]:
        """The error output a Catch puts at its ResultPath."""
        return {"Error": self.error, "Cause": self.cause}


class ExecutionInterrupted(Exception):
    """The runner is stopping: the execution ends where it is, neither failed nor succeeded."""


class LambdaServiceError(Exception):
    """An invoke Lambda itself refused (no such function): `error` is the Step Functions error name."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


# The function name as the state gives it (a name or an ARN, maybe qualified) and the event; returns what
# the handler returned, raises what it raised (or LambdaServiceError).
LambdaInvoker = Callable[[str, Any], Any]
# Bucket and key; returns the object's body.
ObjectReader = Callable[[str, str], bytes]


@dataclass(frozen=True, slots=True)
class InterpreterOptions:
    """Local settings: the cap on Map concurrency (AWS's MaxConcurrency 0 means up to 10,000 children),
    the factor on every retry wait, and the event that asks running executions to stop."""

    max_concurrency: int = DEFAULT_MAP_WORKERS
    retry_interval_scale: float = 1.0
    stop: threading.Event = field(default_factory=threading.Event)
    # How a retry waits; by default on `stop`, so a stop ends the wait. Tests record the waits instead.
    sleep: Callable[[float], None] | None = None
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"Map concurrency cap: expected >= 1, got {self.max_concurrency}")
        if self.retry_interval_scale < 0:
            raise ValueError(f"retry interval scale: expected >= 0, got {self.retry_interval_scale}")


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """What the context object ($$) says about the execution."""

    execution_arn: str
    name: str
    state_machine_arn: str
    state_machine_name: str
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    role_arn: str = ""


@dataclass(frozen=True, slots=True)
class ExecutionOutcome:
    status: Literal["SUCCEEDED", "FAILED"]
    output: Any = None
    error: str | None = None
    cause: str | None = None


# ---- loading: the whole definition checked before anything runs


@dataclass(frozen=True, slots=True)
class _Scope:
    """A set of states with its StartAt: the machine's, or a Map's ItemProcessor."""

    start_at: str
    states: Mapping[str, Mapping[str, Any]]


class StateMachineDefinition:
    """A definition checked whole: every state, field, Resource and path is one the interpreter runs."""

    def __init__(self, definition: Mapping[str, Any], *, name: str) -> None:
        self.name = name
        self.document = definition
        self.scope = _Checker(name).top_level(definition)

    def lambda_functions(self) -> list[tuple[str, str]]:
        """(state, FunctionName) of every lambda:invoke with a literal FunctionName, nested ones too."""
        found: list[tuple[str, str]] = []
        for state_name, state in _all_states(self.scope):
            if state.get("Type") == "Task":
                function = (state.get("Parameters") or {}).get("FunctionName")
                if isinstance(function, str):
                    found.append((state_name, function))
        return found

    def uses_item_reader(self) -> bool:
        return any("ItemReader" in state for _, state in _all_states(self.scope))


def _all_states(scope: _Scope) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, state in scope.states.items():
        yield name, state
        if state.get("Type") == "Map":
            processor = state["ItemProcessor"]
            yield from _all_states(_Scope(processor["StartAt"], processor["States"]))


class _Checker:
    def __init__(self, machine: str) -> None:
        self.machine = machine

    def fail(self, where: str, detail: str) -> DefinitionError:
        return DefinitionError(f"state machine {self.machine}: {where}: {detail}")

    def top_level(self, definition: Mapping[str, Any]) -> _Scope:
        if not isinstance(definition, Mapping):
            raise self.fail("Definition", f"expected a mapping, got {type(definition).__name__}")
        self.fields(definition, TOP_LEVEL_FIELDS, "Definition")
        language = definition.get("QueryLanguage", "JSONPath")
        if language != "JSONPath":
            raise self.fail(
                "Definition.QueryLanguage", f"only JSONPath is interpreted locally, got {language!r}"
            )
        return self.scope(definition, "Definition")

    def fields(self, value: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
        for key in value:
            if key not in allowed:
                hint = _HINTS.get(key, "not supported by the local interpreter")
                raise self.fail(
                    where, f"field {key} is refused ({hint}); supported: {', '.join(sorted(allowed))}"
                )

    def scope(self, owner: Mapping[str, Any], where: str) -> _Scope:
        states = owner.get("States")
        start_at = owner.get("StartAt")
        if not isinstance(states, Mapping) or not states:
            raise self.fail(where, "expected States, a mapping of one state or more")
        if start_at not in states:
            raise self.fail(where, f"StartAt {start_at!r} names no state of {', '.join(states)}")
        for name, state in states.items():
            self.state(str(name), state, states)
        return _Scope(str(start_at), states)

    def state(self, name: str, state: Any, siblings: Mapping[str, Any]) -> None:
        where = f"state {name}"
        if not isinstance(state, Mapping):
            raise self.fail(where, f"expected a mapping, got {state!r}")
        kind = state.get("Type")
        if not isinstance(kind, str) or kind not in STATE_FIELDS:
            raise self.fail(
                f"{where}.Type", f"{kind!r} is not interpreted locally; supported: {', '.join(STATE_FIELDS)}"
            )
        self.fields(state, STATE_FIELDS[kind], where)
        if _TRANSITION & STATE_FIELDS[kind]:
            self.transition(where, state, siblings)
        for key in ("InputPath", "OutputPath"):
            if state.get(key) is not None:
                self.path(state[key], f"{where}.{key}", context_allowed=False)
        if state.get("ResultPath") is not None:
            try:
                reference_path(state["ResultPath"])
            except PathSyntaxError as exc:
                raise self.fail(f"{where}.ResultPath", str(exc)) from None
        for key in ("Parameters", "ResultSelector", "ItemSelector"):
            if key in state:
                self.template(state[key], f"{where}.{key}")
        for index, retrier in enumerate(state.get("Retry") or []):
            self.retrier(retrier, f"{where}.Retry[{index}]", last=index == len(state["Retry"]) - 1)
        for index, catcher in enumerate(state.get("Catch") or []):
            self.catcher(catcher, f"{where}.Catch[{index}]", siblings, last=index == len(state["Catch"]) - 1)
        if kind == "Task":
            self.task(where, state)
        elif kind == "Map":
            self.map(where, state)
        elif kind == "Choice":
            self.choice(where, state, siblings)
        elif kind == "Fail":
            for key in ("Error", "Cause"):
                if key in state and not isinstance(state[key], str):
                    raise self.fail(f"{where}.{key}", f"expected a string, got {state[key]!r}")

    def transition(self, where: str, state: Mapping[str, Any], siblings: Mapping[str, Any]) -> None:
        has_next, ends = "Next" in state, state.get("End") is True
        if has_next == ends:
            raise self.fail(where, "expected exactly one of Next and End: true")
        if "End" in state and state["End"] is not True:
            raise self.fail(f"{where}.End", f"expected true, got {state['End']!r}")
        if has_next and state["Next"] not in siblings:
            raise self.fail(f"{where}.Next", f"{state['Next']!r} names no state here")

    def path(self, text: Any, where: str, *, context_allowed: bool = True) -> None:
        try:
            JsonPath.parse(text, context_allowed=context_allowed)
        except PathSyntaxError as exc:
            raise self.fail(where, str(exc)) from None

    def template(self, template: Any, where: str) -> None:
        if not isinstance(template, Mapping):
            raise self.fail(where, f"expected a mapping, got {template!r}")
        try:
            check_template(template, where)
        except PathSyntaxError as exc:
            raise self.fail(where, str(exc)) from None

    def error_names(self, value: Any, where: str, *, last: bool) -> None:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(
                f"{where}.ErrorEquals", f"expected a non-empty list of error names, got {value!r}"
            )
        if STATES_ALL in value and (len(value) > 1 or not last):
            raise self.fail(f"{where}.ErrorEquals", f"{STATES_ALL} must appear alone, in the last entry")

    def retrier(self, retrier: Any, where: str, *, last: bool) -> None:
        if not isinstance(retrier, Mapping):
            raise self.fail(where, f"expected a mapping, got {retrier!r}")
        self.fields(retrier, RETRIER_FIELDS, where)
        self.error_names(retrier.get("ErrorEquals"), where, last=last)
        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "IntervalSeconds": (lambda v: _is_integer(v) and v >= 1, "a whole number >= 1"),
            "MaxAttempts": (lambda v: _is_integer(v) and v >= 0, "a whole number >= 0"),
            "BackoffRate": (lambda v: _is_number(v) and v >= 1, "a number >= 1"),
            "MaxDelaySeconds": (lambda v: _is_integer(v) and v >= 1, "a whole number >= 1"),
            "JitterStrategy": (lambda v: v in ("FULL", "NONE"), "FULL or NONE"),
        }
        for key, (valid, expected) in checks.items():
            if key in retrier and not valid(retrier[key]):
                raise self.fail(f"{where}.{key}", f"expected {expected}, got {retrier[key]!r}")

    def catcher(self, catcher: Any, where: str, siblings: Mapping[str, Any], *, last: bool) -> None:
        if not isinstance(catcher, Mapping):
            raise self.fail(where, f"expected a mapping, got {catcher!r}")
        self.fields(catcher, CATCHER_FIELDS, where)
        self.error_names(catcher.get("ErrorEquals"), where, last=last)
        if catcher.get("Next") not in siblings:
            raise self.fail(f"{where}.Next", f"{catcher.get('Next')!r} names no state here")
        if catcher.get("ResultPath") is not None:
            try:
                reference_path(catcher["ResultPath"])
            except PathSyntaxError as exc:
                raise self.fail(f"{where}.ResultPath", str(exc)) from None

    def task(self, where: str, state: Mapping[str, Any]) -> None:
        resource = state.get("Resource")
        if not _is_service(resource, "lambda:invoke"):
            raise self.fail(
                f"{where}.Resource", f"only {LAMBDA_INVOKE} is interpreted locally, got {resource!r}"
            )
        parameters = state.get("Parameters")
        if not isinstance(parameters, Mapping):
            raise self.fail(f"{where}.Parameters", "expected FunctionName and Payload")
        self.service_parameters(parameters, LAMBDA_PARAMETERS, f"{where}.Parameters")

    def service_parameters(self, parameters: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
        names = {str(key).removesuffix(".$") for key in parameters}
        if names != allowed or len(parameters) != len(allowed):
            raise self.fail(
                where,
                f"expected exactly {', '.join(sorted(allowed))} (each maybe as .$), "
                f"got {', '.join(parameters)}",
            )

    def map(self, where: str, state: Mapping[str, Any]) -> None:
        processor = state.get("ItemProcessor")
        if not isinstance(processor, Mapping):
            raise self.fail(f"{where}.ItemProcessor", "expected a mapping with StartAt and States")
        self.fields(processor, PROCESSOR_FIELDS, f"{where}.ItemProcessor")
        config = processor.get("ProcessorConfig") or {}
        self.fields(config, frozenset({"Mode", "ExecutionType"}), f"{where}.ItemProcessor.ProcessorConfig")
        mode = config.get("Mode", "INLINE")
        if mode not in ("INLINE", "DISTRIBUTED"):
            raise self.fail(
                f"{where}.ItemProcessor.ProcessorConfig.Mode", f"expected INLINE or DISTRIBUTED, got {mode!r}"
            )
        if "ExecutionType" in config and (
            mode != "DISTRIBUTED" or config["ExecutionType"] not in ("STANDARD", "EXPRESS")
        ):
            raise self.fail(
                f"{where}.ItemProcessor.ProcessorConfig.ExecutionType",
                f"expected STANDARD or EXPRESS with Mode DISTRIBUTED, got {config['ExecutionType']!r}",
            )
        distributed_only = ("ItemReader", "ToleratedFailureCount", "ToleratedFailurePercentage", "Label")
        for key in distributed_only:
            if key in state and mode != "DISTRIBUTED":
                raise self.fail(f"{where}.{key}", "only a DISTRIBUTED Map takes it")
        if "ItemReader" in state:
            if "ItemsPath" in state:
                raise self.fail(
                    f"{where}.ItemsPath", "a Map with an ItemReader reads its items, not ItemsPath"
                )
            self.item_reader(state["ItemReader"], f"{where}.ItemReader")
        if "ItemsPath" in state:
            self.path(state["ItemsPath"], f"{where}.ItemsPath", context_allowed=False)
        if "MaxConcurrency" in state and "MaxConcurrencyPath" in state:
            raise self.fail(where, "expected MaxConcurrency or MaxConcurrencyPath, not both")
        if "MaxConcurrency" in state and not (
            _is_integer(state["MaxConcurrency"]) and state["MaxConcurrency"] >= 0
        ):
            raise self.fail(
                f"{where}.MaxConcurrency", f"expected a whole number >= 0, got {state['MaxConcurrency']!r}"
            )
        if "MaxConcurrencyPath" in state:
            try:
                reference_path(state["MaxConcurrencyPath"])
            except PathSyntaxError as exc:
                raise self.fail(f"{where}.MaxConcurrencyPath", str(exc)) from None
        count = state.get("ToleratedFailureCount", 0)
        percentage = state.get("ToleratedFailurePercentage", 0)
        if not (_is_integer(count) and count >= 0):
            raise self.fail(f"{where}.ToleratedFailureCount", f"expected a whole number >= 0, got {count!r}")
        if not (_is_number(percentage) and 0 <= percentage <= 100):
            raise self.fail(f"{where}.ToleratedFailurePercentage", f"expected 0 to 100, got {percentage!r}")
        self.scope(processor, f"{where}.ItemProcessor")

    def item_reader(self, reader: Any, where: str) -> None:
        if not isinstance(reader, Mapping):
            raise self.fail(where, f"expected a mapping, got {reader!r}")
        self.fields(reader, frozenset({"Resource", "ReaderConfig", "Parameters"}), where)
        if not _is_service(reader.get("Resource"), "s3:getObject"):
            raise self.fail(
                f"{where}.Resource", f"only {S3_GET_OBJECT} is read locally, got {reader.get('Resource')!r}"
            )
        config = reader.get("ReaderConfig") or {}
        self.fields(config, frozenset({"InputType", "MaxItems"}), f"{where}.ReaderConfig")
        if config.get("InputType") != "JSON":
            raise self.fail(
                f"{where}.ReaderConfig.InputType",
                f"only JSON is read locally, got {config.get('InputType')!r}",
            )
        if "MaxItems" in config and not (_is_integer(config["MaxItems"]) and config["MaxItems"] >= 1):
            raise self.fail(
                f"{where}.ReaderConfig.MaxItems", f"expected a whole number >= 1, got {config['MaxItems']!r}"
            )
        parameters = reader.get("Parameters")
        if not isinstance(parameters, Mapping):
            raise self.fail(f"{where}.Parameters", "expected Bucket and Key")
        self.template(parameters, f"{where}.Parameters")
        self.service_parameters(parameters, READER_PARAMETERS, f"{where}.Parameters")

    def choice(self, where: str, state: Mapping[str, Any], siblings: Mapping[str, Any]) -> None:
        choices = state.get("Choices")
        if not isinstance(choices, list) or not choices:
            raise self.fail(f"{where}.Choices", "expected a non-empty list of rules")
        for index, rule in enumerate(choices):
            rule_where = f"{where}.Choices[{index}]"
            if not isinstance(rule, Mapping) or rule.get("Next") not in siblings:
                raise self.fail(f"{rule_where}.Next", f"expected the name of a state here, got {rule!r}")
            self.rule({k: v for k, v in rule.items() if k != "Next"}, rule_where)
        if "Default" in state and state["Default"] not in siblings:
            raise self.fail(f"{where}.Default", f"{state['Default']!r} names no state here")

    def rule(self, rule: Mapping[str, Any], where: str) -> None:
        rule = {k: v for k, v in rule.items() if k != "Comment"}
        combinators = [key for key in _COMBINATORS if key in rule]
        if combinators:
            if len(rule) != 1:
                raise self.fail(where, f"{combinators[0]} stands alone in its rule, got {', '.join(rule)}")
            operand = rule[combinators[0]]
            if combinators[0] == "Not":
                if not isinstance(operand, Mapping):
                    raise self.fail(f"{where}.Not", "expected one rule")
                self.rule(operand, f"{where}.Not")
                return
            if not isinstance(operand, list) or not operand:
                raise self.fail(f"{where}.{combinators[0]}", "expected a non-empty list of rules")
            for index, inner in enumerate(operand):
                if not isinstance(inner, Mapping) or "Next" in inner:
                    raise self.fail(f"{where}.{combinators[0]}[{index}]", "expected a rule without Next")
                self.rule(inner, f"{where}.{combinators[0]}[{index}]")
            return
        self.path(rule.get("Variable"), f"{where}.Variable")
        operators = [key for key in rule if key != "Variable"]
        if len(operators) != 1 or operators[0] not in COMPARISON_OPERATORS:
            raise self.fail(
                where,
                f"expected Variable and one comparison of {', '.join(sorted(COMPARISON_OPERATORS))} "
                f"(Timestamp comparisons are not supported locally), got {', '.join(operators) or 'none'}",
            )
        operator = operators[0]
        operand = rule[operator]
        if operator.endswith("Path"):
            self.path(operand, f"{where}.{operator}")
        elif operator in _STRING_COMPARISONS or operator == "StringMatches":
            if not isinstance(operand, str):
                raise self.fail(f"{where}.{operator}", f"expected a string, got {operand!r}")
        elif operator in _NUMERIC_COMPARISONS:
            if not _is_number(operand):
                raise self.fail(f"{where}.{operator}", f"expected a number, got {operand!r}")
        elif not isinstance(operand, bool):
            raise self.fail(f"{where}.{operator}", f"expected true or false, got {operand!r}")


def _is_service(resource: Any, action: str) -> bool:
    match = _SERVICE_RESOURCE.fullmatch(resource) if isinstance(resource, str) else None
    return match is not None and match.group(1) == action


# ---- errors and retries


def error_matches(error_equals: Sequence[str], error: str) -> bool:
    """Whether a retrier's or catcher's ErrorEquals covers `error`: by name, States.ALL or States.TaskFailed
    (not States.Timeout); never a terminal error (States.Runtime, States.DataLimitExceeded)."""
    if error in TERMINAL_ERRORS:
        return False
    return any(
        name in (error, STATES_ALL) or (name == TASK_FAILED and error != TIMEOUT) for name in error_equals
    )


def payload_bytes(value: Any) -> int:
    """The size Step Functions gives state data: its JSON text (compact) as UTF-8."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", errors="surrogatepass"))


def check_payload(state: str, what: str, value: Any) -> None:
    """States.DataLimitExceeded when `value`, `what` of `state`, is over the payload quota."""
    size = payload_bytes(value)
    if size > PAYLOAD_LIMIT_BYTES:
        raise StatesError(
            DATA_LIMIT_EXCEEDED,
            f"state {state}: {what} is {size} bytes of JSON, over the {PAYLOAD_LIMIT_BYTES}-byte limit on "
            "state data",
        )


def retry_delay(
    retrier: Mapping[str, Any], retries_so_far: int, draw: Callable[[], float] = random.random
) -> float:
    """Seconds before the retry after `retries_so_far` retries of this retrier: IntervalSeconds times
    BackoffRate to that power, at most MaxDelaySeconds; FULL jitter draws uniformly below it."""
    delay = (
        float(retrier.get("IntervalSeconds", DEFAULT_INTERVAL_SECONDS))
        * float(retrier.get("BackoffRate", DEFAULT_BACKOFF_RATE)) ** retries_so_far
    )
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, float(retrier["MaxDelaySeconds"]))
    if retrier.get("JitterStrategy", "NONE") == "FULL":
        delay *= draw()
    return delay


def lambda_error(exc: BaseException) -> StatesError:
    """A handler's exception as the lambda:invoke integration reports it: Error is the type's name, Cause the
    JSON Lambda's Python runtime writes."""
    error_type = type(exc).__name__
    payload = {
        "errorMessage": str(exc),
        "errorType": error_type,
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }
    return StatesError(error_type, json.dumps(payload))


# ---- running


class Interpreter:
    """Runs executions of one checked definition. Reentrant: each `run` keeps its own data."""

    def __init__(
        self,
        definition: StateMachineDefinition,
        *,
        invoke: LambdaInvoker,
        read_object: ObjectReader | None = None,
        options: InterpreterOptions | None = None,
    ) -> None:
        self.definition = definition
        self.invoke = invoke
        self.read_object = read_object
        self.options = options or InterpreterOptions()

    def run(self, execution: ExecutionInfo, execution_input: Any) -> ExecutionOutcome:
        """The execution to its end; raises ExecutionInterrupted when the options' stop event is set."""
        run = _Execution(self, execution, execution_input)
        try:
            output = run.scope(self.definition.scope, execution_input)
        except StatesError as exc:
            return ExecutionOutcome("FAILED", error=exc.error, cause=exc.cause)
        return ExecutionOutcome("SUCCEEDED", output=output)


class _Execution:
    def __init__(self, interpreter: Interpreter, info: ExecutionInfo, execution_input: Any) -> None:
        self.interpreter = interpreter
        self.options = interpreter.options
        self.info = info
        self.execution_context = {
            "Id": info.execution_arn,
            "Input": execution_input,
            "Name": info.name,
            "RoleArn": info.role_arn,
            "StartTime": _iso(info.start_time),
            "RedriveCount": 0,
        }

    def check_stop(self) -> None:
        if self.options.stop.is_set():
            raise ExecutionInterrupted()

    def context(self, state: str, retry_count: int = 0) -> dict[str, Any]:
        """The context object ($$) in `state`; a Map's ItemSelector adds Map.Item."""
        return {
            "Execution": self.execution_context,
            "StateMachine": {"Id": self.info.state_machine_arn, "Name": self.info.state_machine_name},
            "State": {"Name": state, "EnteredTime": _iso(datetime.now(UTC)), "RetryCount": retry_count},
        }

    def scope(self, scope: _Scope, data: Any) -> Any:
        following: str | None = scope.start_at
        while following is not None:
            self.check_stop()
            name, state = following, scope.states[following]
            try:
                data, following = self.state(name, state, data)
            except StatesError as exc:
                catcher = next(
                    (c for c in state.get("Catch") or [] if error_matches(c["ErrorEquals"], exc.error)), None
                )
                if catcher is None:
                    raise
                logger.info("state %s: %s caught, next %s", name, exc.error, catcher["Next"])
                with runtime_errors(name):
                    data = with_result(data, catcher.get("ResultPath", "$"), exc.as_output())
                following = catcher["Next"]
            check_payload(name, "its output", data)
        return data

    def state(self, name: str, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        kind = state["Type"]
        following = state.get("Next")
        if kind == "Fail":
            raise StatesError(str(state.get("Error", "")), str(state.get("Cause", "")))
        with runtime_errors(name):
            effective = select(raw, state.get("InputPath", "$"))
        if kind in ("Succeed", "Choice"):
            following = self.choose(name, state, effective) if kind == "Choice" else None
            with runtime_errors(name):
                return select(effective, state.get("OutputPath", "$")), following
        if kind == "Pass":
            with runtime_errors(name):
                if "Result" in state:
                    result = state["Result"]
                elif "Parameters" in state:
                    result = expand_template(state["Parameters"], effective, self.context(name))
                    check_payload(name, "its input after Parameters", result)
                else:
                    result = effective
        elif kind == "Task":
            result = self.retrying(name, state, lambda retries: self.task(name, state, effective, retries))
        else:
            result = self.retrying(name, state, lambda retries: self.map(name, state, effective, retries))
        return self.finish(name, state, raw, result), following

    def finish(self, name: str, state: Mapping[str, Any], raw: Any, result: Any) -> Any:
        with runtime_errors(name):
            selected = result
            if "ResultSelector" in state:
                selected = expand_template(state["ResultSelector"], result, self.context(name))
            output = with_result(raw, state.get("ResultPath", "$"), selected)
            return select(output, state.get("OutputPath", "$"))

    def retrying(self, name: str, state: Mapping[str, Any], attempt: Callable[[int], Any]) -> Any:
        retriers: list[Mapping[str, Any]] = state.get("Retry") or []
        used = [0] * len(retriers)
        retries = 0
        while True:
            self.check_stop()
            try:
                return attempt(retries)
            except StatesError as exc:
                index = next(
                    (i for i, r in enumerate(retriers) if error_matches(r["ErrorEquals"], exc.error)), None
                )
                if index is None or used[index] >= retriers[index].get("MaxAttempts", DEFAULT_MAX_ATTEMPTS):
                    raise
                delay = (
                    retry_delay(retriers[index], used[index], self.options.random)
                    * self.options.retry_interval_scale
                )
                used[index] += 1
                retries += 1
                logger.info("state %s: %s, retry %d in %.3fs", name, exc.error, used[index], delay)
                self.sleep(delay)

    def sleep(self, seconds: float) -> None:
        if self.options.sleep is not None:
            self.options.sleep(seconds)
        elif self.options.stop.wait(seconds):
            raise ExecutionInterrupted()

    def task(self, name: str, state: Mapping[str, Any], effective: Any, retries: int) -> Any:
        with runtime_errors(name):
            parameters = expand_template(state["Parameters"], effective, self.context(name, retries))
        check_payload(name, "its input after Parameters", parameters)
        function = parameters["FunctionName"]
        if not isinstance(function, str):
            raise StatesError(RUNTIME, f"state {name}: expected FunctionName to be a string")
        event = json.loads(json.dumps(parameters["Payload"]))
        try:
            returned = self.interpreter.invoke(function, event)
        except LambdaServiceError as exc:
            raise StatesError(exc.error, exc.message) from None
        except (ExecutionInterrupted, StatesError):
            raise
        except Exception as exc:
            raise lambda_error(exc) from None
        try:
            payload = json.loads(json.dumps(returned))
        except (TypeError, ValueError) as exc:
            cause = {
                "errorMessage": f"Unable to marshal response: {exc}",
                "errorType": MARSHAL_ERROR,
                "stackTrace": [],
            }
            raise StatesError(MARSHAL_ERROR, json.dumps(cause)) from None
        result = {"ExecutedVersion": "$LATEST", "Payload": payload, "StatusCode": 200}
        check_payload(name, "the lambda:invoke result", result)
        return result

    def choose(self, name: str, state: Mapping[str, Any], data: Any) -> str:
        for rule in state["Choices"]:
            with runtime_errors(name):
                holds = _holds(rule, data, self.context(name))
            if holds:
                return str(rule["Next"])
        if "Default" in state:
            return str(state["Default"])
        raise StatesError(NO_CHOICE_MATCHED, f"state {name}: no choice rule matched and there is no Default")

    # -- Map

    def map(self, name: str, state: Mapping[str, Any], effective: Any, retries: int) -> list[Any]:
        context = self.context(name, retries)
        items = self.items(name, state, effective, context)
        limit = self.concurrency(name, state, effective)
        processor = state["ItemProcessor"]
        distributed = (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED"
        scope = _Scope(processor["StartAt"], processor["States"])
        tolerance = _Tolerance.of(state, len(items)) if distributed else None
        logger.debug("state %s: %d item(s), %d at a time", name, len(items), limit)

        def item_input(index: int) -> Any:
            selected = items[index]
            if "ItemSelector" in state:
                item_context = {**context, "Map": {"Item": {"Index": index, "Value": items[index]}}}
                with runtime_errors(name):
                    selected = expand_template(state["ItemSelector"], effective, item_context)
            check_payload(name, f"item {index}'s input", selected)
            return selected

        outputs = self.run_items(name, scope, item_input, len(items), limit=limit, tolerance=tolerance)
        # AWS gathers the items' outputs into the Map's result before ResultSelector and ResultPath apply.
        check_payload(name, f"the array of its {len(outputs)} items' outputs", outputs)
        return outputs

    def run_items(
        self,
        name: str,
        scope: _Scope,
        item_input: Callable[[int], Any],
        count: int,
        *,
        limit: int,
        tolerance: _Tolerance | None,
    ) -> list[Any]:
        """Each item through `scope`, `limit` at a time, outputs in item order. `tolerance` None: an inline
        Map, which its first failed item fails; else a distributed one, failed past its tolerance. Either
        stops starting items then and waits for the running ones."""
        outputs: list[Any] = [None] * count
        finished: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()

        def run_item(index: int, item: Any) -> None:
            try:
                finished.put((index, self.scope(scope, item), None))
            except BaseException as exc:  # handed to the Map's thread, which decides
                finished.put((index, None, exc))

        failures = running = upcoming = 0
        first_error: BaseException | None = None
        interrupted = False
        while upcoming < count or running:
            starting = first_error is None and not interrupted and not self.options.stop.is_set()
            while starting and upcoming < count and running < limit:
                try:
                    item = item_input(upcoming)
                except StatesError as exc:
                    first_error = exc
                    break
                # Daemon threads: a stack stopping mid-invoke must not wait for the invoke at exit.
                threading.Thread(
                    target=run_item, args=(upcoming, item), name=f"maas-sfn-{name}-{upcoming}", daemon=True
                ).start()
                running += 1
                upcoming += 1
            if not running:
                break
            index, output, error = finished.get()
            running -= 1
            if error is None:
                outputs[index] = output
            elif isinstance(error, ExecutionInterrupted):
                interrupted = True
            elif isinstance(error, StatesError) and tolerance is not None:
                failures += 1
                logger.debug("state %s: item %d failed (%s)", name, index, error.error)
                if tolerance.exceeded(failures) and first_error is None:
                    first_error = StatesError(EXCEED_TOLERATED_FAILURE, EXCEED_TOLERATED_FAILURE_CAUSE)
            else:
                first_error = first_error or error  # an inline Map fails with its item's error
        if first_error is not None:
            raise first_error
        if interrupted or upcoming < count:
            raise ExecutionInterrupted()  # the stop came before every item ran
        return outputs

    def items(
        self, name: str, state: Mapping[str, Any], effective: Any, context: Mapping[str, Any]
    ) -> list[Any]:
        if "ItemReader" not in state:
            with runtime_errors(name):
                items = select(effective, state.get("ItemsPath", "$"))
            if not isinstance(items, list):
                raise StatesError(RUNTIME, f"state {name}: expected ItemsPath to select an array")
            return items
        reader = state["ItemReader"]
        with runtime_errors(name):
            parameters = expand_template(reader["Parameters"], effective, context)
        bucket, key = parameters["Bucket"], parameters["Key"]
        if not isinstance(bucket, str) or not isinstance(key, str):
            raise StatesError(ITEM_READER_FAILED, f"state {name}: expected Bucket and Key to be strings")
        if self.interpreter.read_object is None:
            raise StatesError(ITEM_READER_FAILED, f"state {name}: no object store to read items from")
        try:
            body = self.interpreter.read_object(bucket, key)
        except Exception as exc:
            raise StatesError(
                ITEM_READER_FAILED, f"state {name}: reading s3://{bucket}/{key}: {exc}"
            ) from None
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise StatesError(
                ITEM_READER_FAILED, f"state {name}: s3://{bucket}/{key} is not JSON: {exc}"
            ) from None
        if not isinstance(items, list):
            raise StatesError(ITEM_READER_FAILED, f"state {name}: s3://{bucket}/{key} is not a JSON array")
        max_items = (reader.get("ReaderConfig") or {}).get("MaxItems")
        return items[:max_items] if max_items else items

    def concurrency(self, name: str, state: Mapping[str, Any], effective: Any) -> int:
        if "MaxConcurrencyPath" in state:
            with runtime_errors(name):
                wanted = select(effective, state["MaxConcurrencyPath"])
            if not (_is_integer(wanted) and wanted >= 0):
                raise StatesError(
                    RUNTIME, f"state {name}: expected MaxConcurrencyPath to select a whole number >= 0"
                )
        else:
            wanted = state.get("MaxConcurrency", 0)
        cap = self.options.max_concurrency
        return cap if wanted == 0 else min(int(wanted), cap)


@dataclass(frozen=True, slots=True)
class _Tolerance:
    """A distributed Map's tolerated failures: with neither field, one failure is too many."""

    count: int | None
    percentage: float | None
    total: int

    @classmethod
    def of(cls, state: Mapping[str, Any], total: int) -> _Tolerance:
        return cls(state.get("ToleratedFailureCount"), state.get("ToleratedFailurePercentage"), total)

    def exceeded(self, failures: int) -> bool:
        if self.count is None and self.percentage is None:
            return failures > 0
        over_count = self.count is not None and failures > self.count
        over_share = self.percentage is not None and failures * 100 > self.percentage * max(self.total, 1)
        return over_count or over_share


@contextmanager
def runtime_errors(state: str) -> Iterator[None]:
    """A path that selects nothing in `state` is States.Runtime, which no Retry or Catch takes."""
    try:
        yield
    except PathNotFound as exc:
        raise StatesError(RUNTIME, f"state {state}: {exc}") from None


def _holds(rule: Mapping[str, Any], data: Any, context: Mapping[str, Any]) -> bool:
    """Whether a Choice rule holds; a Variable that selects nothing is States.Runtime (PathNotFound),
    except for IsPresent; a value of another type than the comparison's is simply not a match."""
    if "And" in rule:
        return all(_holds(inner, data, context) for inner in rule["And"])
    if "Or" in rule:
        return any(_holds(inner, data, context) for inner in rule["Or"])
    if "Not" in rule:
        return not _holds(rule["Not"], data, context)
    path = JsonPath.parse(rule["Variable"])
    operator = next(key for key in rule if key in COMPARISON_OPERATORS)
    operand = rule[operator]
    if operator == "IsPresent":
        try:
            path.read(data, context)
        except PathNotFound:
            return not operand
        return bool(operand)
    value = path.read(data, context)
    if operator in _TYPE_TESTS:
        return bool(_TYPE_TESTS[operator](value) == operand)
    if operator.endswith("Path"):
        operator = operator.removesuffix("Path")
        operand = JsonPath.parse(operand).read(data, context)
    if operator == "BooleanEquals":
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    if operator == "StringMatches":
        return isinstance(value, str) and _string_matches(value, operand)
    if operator in _STRING_COMPARISONS:
        return (
            isinstance(value, str)
            and isinstance(operand, str)
            and _STRING_COMPARISONS[operator](value, operand)
        )
    return _is_number(value) and _is_number(operand) and _NUMERIC_COMPARISONS[operator](value, operand)


def _string_matches(value: str, pattern: str) -> bool:
    """StringMatches: `*` matches any run of characters; `\\*` and `\\\\` are a literal star and backslash."""
    regex = ""
    escaped = False
    for char in pattern:
        if escaped:
            regex += re.escape(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            regex += ".*"
        else:
            regex += re.escape(char)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
