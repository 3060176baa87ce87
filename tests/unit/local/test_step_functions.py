"""The local ASL interpreter: small definitions run against plain Python callables standing in for Lambda
functions, the paths and payload templates, Choice, Retry with its backoff, Catch, Map concurrency and
failures, the S3 ItemReader over moto, and the definitions it refuses, each naming the state and field."""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from maas.local.asl_paths import JsonPath, PathNotFound, PathSyntaxError, expand_template, with_result
from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from maas.local.step_functions import (
    DATA_LIMIT_EXCEEDED,
    EXCEED_TOLERATED_FAILURE,
    LAMBDA_INVOKE,
    PAYLOAD_LIMIT_BYTES,
    DefinitionError,
    ExecutionInfo,
    ExecutionInterrupted,
    ExecutionOutcome,
    Interpreter,
    InterpreterOptions,
    StateMachineDefinition,
    StatesError,
    check_payload,
    error_matches,
    payload_bytes,
    retry_delay,
)
from tests.support.aws import moto_bucket
from tests.support.paths import TEMPLATE

INFO = ExecutionInfo(
    execution_arn="arn:aws:states:us-east-1:123456789012:execution:machine:run-1",
    name="run-1",
    state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:machine",
    state_machine_name="machine",
)
Handler = Callable[[Any], Any]


def task(function: str = "Echo", payload: Any = None, **fields: Any) -> dict[str, Any]:
    """A lambda:invoke Task of `function` (the whole input as its payload unless given) that ends."""
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function, "Payload.$": "$"}
        if payload is None
        else {
            "FunctionName": function,
            "Payload": payload,
        },
    }
    state.update(fields)
    if "Next" not in state:
        state["End"] = True
    return state


def machine(*states: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"StartAt": states[0][0], "States": dict(states)}


class Functions:
    """Plain callables by name, invoked as the interpreter's Lambda; records every event."""

    def __init__(self, **handlers: Handler) -> None:
        self.handlers = {"Echo": lambda event: event, **handlers}
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, function: str, event: Any) -> Any:
        name = function.split(":")[6] if function.startswith("arn:") else function
        with self._lock:
            self.events.append((name, copy.deepcopy(event)))
        return self.handlers[name](event)

    def calls(self, name: str) -> int:
        return sum(1 for called, _ in self.events if called == name)


def run(
    definition: Mapping[str, Any],
    execution_input: Any,
    functions: Functions | None = None,
    *,
    waits: list[float] | None = None,
    read_object: Callable[[str, str], bytes] | None = None,
    **options: Any,
) -> ExecutionOutcome:
    interpreter = Interpreter(
        StateMachineDefinition(definition, name="Machine"),
        invoke=functions or Functions(),
        read_object=read_object,
        options=InterpreterOptions(sleep=(waits.append if waits is not None else lambda _: None), **options),
    )
    return interpreter.run(INFO, execution_input)


# ---- paths


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        ("$", {"a": 1}, {"a": 1}),
        ("$.a.b", {"a": {"b": [1, 2]}}, [1, 2]),
        ("$.a[1]", {"a": [10, 20]}, 20),
        ("$['odd key'].x", {"odd key": {"x": None}}, None),
        ('$["q"]', {"q": "yes"}, "yes"),
    ],
)
def test_a_path_reads_names_quoted_names_and_indexes(path: str, data: Any, expected: Any) -> None:
    assert JsonPath.parse(path).read(data) == expected


@pytest.mark.parametrize(
    ("path", "data"), [("$.missing", {"a": 1}), ("$.a[2]", {"a": [1]}), ("$.a.b", {"a": 3})]
)
def test_a_path_that_selects_nothing_is_path_not_found(path: str, data: Any) -> None:
    with pytest.raises(PathNotFound, match="could not be found"):
        JsonPath.parse(path).read(data)


@pytest.mark.parametrize(
    "path", ["$.a[*]", "$..a", "$.a[?(@.b)]", "$.a[0:2]", "$.a[0,1]", "a.b", "States.Format('{}', $.a)"]
)
def test_paths_the_interpreter_does_not_evaluate_are_syntax_errors(path: str) -> None:
    with pytest.raises(PathSyntaxError):
        JsonPath.parse(path)


@pytest.mark.parametrize(
    ("result_path", "expected"),
    [
        ("$", "R"),
        ("$.out", {"in": 1, "out": "R"}),
        ("$.deep.er", {"in": 1, "deep": {"er": "R"}}),
        ("$.in", {"in": "R"}),
        (None, {"in": 1}),
    ],
)
def test_result_path_places_the_result_or_discards_it(result_path: str | None, expected: Any) -> None:
    data = {"in": 1}

    assert with_result(data, result_path, "R") == expected
    assert data == {"in": 1}  # the input is not changed in place


def test_a_payload_template_reads_the_data_and_the_context_object() -> None:
    template = {
        "literal": "x",
        "a.$": "$.a",
        "nested": {"name.$": "$$.Execution.Name"},
        "list": [{"b.$": "$.b"}],
    }

    expanded = expand_template(template, {"a": [1], "b": 2}, {"Execution": {"Name": "run-1"}})

    assert expanded == {"literal": "x", "a": [1], "nested": {"name": "run-1"}, "list": [{"b": 2}]}


# ---- tasks, data flow and the context object


def test_a_task_result_is_shaped_as_the_lambda_invoke_integration_gives_it() -> None:
    functions = Functions(Double=lambda event: {"twice": event["n"] * 2})
    definition = machine(("Double", task("Double", {"n.$": "$.n"})))

    outcome = run(definition, {"n": 21}, functions)

    assert outcome == ExecutionOutcome(
        "SUCCEEDED", output={"ExecutedVersion": "$LATEST", "Payload": {"twice": 42}, "StatusCode": 200}
    )


def test_input_parameters_result_selector_result_path_and_output_path_apply_in_order() -> None:
    functions = Functions(Double=lambda event: {"twice": event["n"] * 2})
    definition = machine(
        (
            "Double",
            task(
                "Double",
                {"n.$": "$.n"},
                InputPath="$.numbers",
                ResultSelector={"value.$": "$.Payload.twice", "code.$": "$.StatusCode"},
                ResultPath="$.numbers.result",
                OutputPath="$.numbers",
            ),
        )
    )

    outcome = run(definition, {"numbers": {"n": 4}, "other": True}, functions)

    assert outcome.output == {"n": 4, "result": {"value": 8, "code": 200}}


def test_result_path_null_keeps_the_input_and_the_context_object_names_the_execution() -> None:
    functions = Functions(Record=lambda event: "ignored")
    payload = {"name.$": "$$.Execution.Name", "id.$": "$$.Execution.Id", "input.$": "$$.Execution.Input"}
    definition = machine(("Record", task("Record", payload, ResultPath=None)))

    outcome = run(definition, {"keep": 1}, functions)

    assert outcome.output == {"keep": 1}
    assert functions.events == [("Record", {"name": "run-1", "id": INFO.execution_arn, "input": {"keep": 1}})]


def test_a_handler_exception_is_its_class_name_with_lambdas_error_json_as_the_cause() -> None:
    def broken(event: Any) -> Any:
        raise KeyError("no such thing")

    outcome = run(machine(("Broken", task("Broken"))), {}, Functions(Broken=broken))

    assert outcome.status == "FAILED"
    assert outcome.error == "KeyError"
    assert outcome.cause is not None
    cause = json.loads(outcome.cause)
    assert cause["errorType"] == "KeyError"
    assert cause["errorMessage"] == "'no such thing'"
    assert isinstance(cause["stackTrace"], list)
    assert any("in broken" in line for line in cause["stackTrace"])


def test_a_parameter_path_that_selects_nothing_fails_the_execution_past_any_catch() -> None:
    definition = machine(
        ("Read", task("Echo", {"x.$": "$.missing"}, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Done"}])),
        ("Done", {"Type": "Succeed"}),
    )

    outcome = run(definition, {"present": 1})

    assert outcome.status == "FAILED"
    assert outcome.error == "States.Runtime"
    assert "state Read" in (outcome.cause or "")


def test_pass_succeed_and_fail_states() -> None:
    definition = machine(
        ("Set", {"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.flag", "Next": "Done"}),
        ("Done", {"Type": "Succeed", "OutputPath": "$.flag"}),
    )
    failing = machine(("Stop", {"Type": "Fail", "Error": "Custom", "Cause": "because"}))

    assert run(definition, {"in": 1}) == ExecutionOutcome("SUCCEEDED", output={"ok": True})
    assert run(failing, {}) == ExecutionOutcome("FAILED", error="Custom", cause="because")


# ---- Choice


@pytest.mark.parametrize(
    ("rule", "data", "holds"),
    [
        ({"Variable": "$.v", "BooleanEquals": True}, {"v": True}, True),
        ({"Variable": "$.v", "BooleanEquals": True}, {"v": 1}, False),
        ({"Variable": "$.v", "NumericEquals": 3}, {"v": 3.0}, True),
        ({"Variable": "$.v", "NumericGreaterThan": 3}, {"v": 4}, True),
        ({"Variable": "$.v", "NumericLessThanEquals": 3}, {"v": 4}, False),
        ({"Variable": "$.v", "NumericEquals": 1}, {"v": True}, False),
        ({"Variable": "$.v", "NumericGreaterThanEqualsPath": "$.w"}, {"v": 2, "w": 2}, True),
        ({"Variable": "$.v", "StringEquals": "a"}, {"v": "a"}, True),
        ({"Variable": "$.v", "StringLessThan": "b"}, {"v": "a"}, True),
        ({"Variable": "$.v", "StringMatches": "log-*.txt"}, {"v": "log-1.txt"}, True),
        ({"Variable": "$.v", "StringMatches": "a\\*"}, {"v": "ab"}, False),
        ({"Variable": "$.v", "IsPresent": True}, {}, False),
        ({"Variable": "$.v", "IsPresent": False}, {}, True),
        ({"Variable": "$.v", "IsNull": True}, {"v": None}, True),
        ({"Variable": "$.v", "IsNumeric": True}, {"v": "3"}, False),
        ({"Variable": "$.v", "IsString": True}, {"v": "3"}, True),
        ({"Variable": "$.v", "IsBoolean": False}, {"v": 0}, True),
        (
            {"And": [{"Variable": "$.v", "IsPresent": True}, {"Variable": "$.v", "NumericEquals": 1}]},
            {"v": 1},
            True,
        ),
        (
            {"Or": [{"Variable": "$.v", "IsNull": True}, {"Variable": "$.v", "StringEquals": "x"}]},
            {"v": "x"},
            True,
        ),
        ({"Not": {"Variable": "$.v", "BooleanEquals": True}}, {"v": False}, True),
    ],
)
def test_choice_rules(rule: dict[str, Any], data: Any, holds: bool) -> None:
    definition = machine(
        ("Decide", {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"}),
        ("Yes", {"Type": "Pass", "Result": "yes", "End": True}),
        ("No", {"Type": "Pass", "Result": "no", "End": True}),
    )

    assert run(definition, data).output == ("yes" if holds else "no")


def test_a_choice_with_no_match_and_no_default_fails_and_a_missing_variable_is_a_runtime_error() -> None:
    definition = machine(
        (
            "Decide",
            {"Type": "Choice", "Choices": [{"Variable": "$.v", "BooleanEquals": True, "Next": "Yes"}]},
        ),
        ("Yes", {"Type": "Succeed"}),
    )

    assert run(definition, {"v": False}).error == "States.NoChoiceMatched"
    assert run(definition, {}).error == "States.Runtime"


# ---- Retry and Catch


def flaky(failures: int, error: type[Exception] = RuntimeError) -> Handler:
    """Raises `error` on the first `failures` calls, then answers 'ok'."""
    calls = []

    def handler(event: Any) -> Any:
        calls.append(event)
        if len(calls) <= failures:
            raise error(f"failure {len(calls)}")
        return "ok"

    return handler


@pytest.mark.parametrize(
    ("retrier", "failures", "expected_waits", "status"),
    [
        (
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 3},
            3,
            [2.0, 4.0, 8.0],
            "SUCCEEDED",
        ),
        (
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 3},
            4,
            [2.0, 4.0, 8.0],
            "FAILED",
        ),
        (
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxDelaySeconds": 10},
            3,
            [2.0, 6.0, 10.0],
            "SUCCEEDED",
        ),
        ({"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1}, 1, [1.0], "SUCCEEDED"),
        (
            {"ErrorEquals": ["RuntimeError"], "IntervalSeconds": 1, "BackoffRate": 1},
            2,
            [1.0, 1.0],
            "SUCCEEDED",
        ),
        ({"ErrorEquals": ["ValueError"]}, 1, [], "FAILED"),
        ({"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}, 1, [], "FAILED"),
    ],
)
def test_retry_counts_and_backoff(
    retrier: dict[str, Any], failures: int, expected_waits: list[float], status: str
) -> None:
    functions = Functions(Flaky=flaky(failures))
    waits: list[float] = []

    outcome = run(machine(("Call", task("Flaky", {}, Retry=[retrier]))), {}, functions, waits=waits)

    assert outcome.status == status
    assert waits == expected_waits
    assert functions.calls("Flaky") == 1 + len(expected_waits)


def test_retry_waits_are_scaled_and_full_jitter_draws_below_the_backoff() -> None:
    retrier = {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "JitterStrategy": "FULL",
    }
    waits: list[float] = []

    run(
        machine(("Call", task("Flaky", {}, Retry=[retrier]))),
        {},
        Functions(Flaky=flaky(3)),
        waits=waits,
        retry_interval_scale=0.001,
        random=lambda: 0.5,
    )

    assert waits == pytest.approx([0.001, 0.002, 0.004])
    assert retry_delay(retrier, 2, lambda: 0.25) == 2.0


def test_the_first_matching_retrier_decides_even_when_it_is_exhausted() -> None:
    retriers = [
        {"ErrorEquals": ["RuntimeError"], "MaxAttempts": 1},
        {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5},
    ]
    functions = Functions(Flaky=flaky(3))

    outcome = run(machine(("Call", task("Flaky", {}, Retry=retriers))), {}, functions)

    assert outcome.error == "RuntimeError"
    assert functions.calls("Flaky") == 2


@pytest.mark.parametrize(
    ("error", "names", "matches"),
    [
        ("ValueError", ["States.ALL"], True),
        ("ValueError", ["States.TaskFailed"], True),
        ("States.Timeout", ["States.TaskFailed"], False),
        ("States.Timeout", ["States.ALL"], True),
        ("States.Runtime", ["States.ALL"], False),
        ("States.DataLimitExceeded", ["States.ALL"], False),
        ("States.DataLimitExceeded", ["States.TaskFailed"], False),
        ("ValueError", ["KeyError", "ValueError"], True),
        ("ValueError", ["KeyError"], False),
    ],
)
def test_error_matching(error: str, names: list[str], matches: bool) -> None:
    assert error_matches(names, error) is matches


def test_catch_puts_the_error_output_at_its_result_path_and_goes_on() -> None:
    def broken(event: Any) -> Any:
        raise ValueError("bad shard")

    definition = machine(
        (
            "Call",
            task(
                "Broken",
                {},
                Catch=[
                    {"ErrorEquals": ["KeyError"], "Next": "Wrong"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Handled"},
                ],
            ),
        ),
        ("Wrong", {"Type": "Fail", "Error": "Wrong"}),
        ("Handled", {"Type": "Succeed"}),
    )

    outcome = run(definition, {"job": 1}, Functions(Broken=broken))

    assert outcome.status == "SUCCEEDED"
    assert outcome.output["job"] == 1
    assert outcome.output["failure"]["Error"] == "ValueError"
    assert json.loads(outcome.output["failure"]["Cause"])["errorMessage"] == "bad shard"


# ---- Map


def map_state(mode: str = "INLINE", **fields: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"Mode": mode}
    if mode == "DISTRIBUTED":
        config["ExecutionType"] = "STANDARD"
    return {
        "Type": "Map",
        "ItemProcessor": {"ProcessorConfig": config, "StartAt": "Work", "States": {"Work": task("Work")}},
        "End": True,
        **fields,
    }


READER = {
    "Resource": "arn:aws:states:::s3:getObject",
    "ReaderConfig": {"InputType": "JSON"},
    "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"},
}


class Gauge:
    """A handler that takes a while and records how many calls ran at once."""

    def __init__(self, seconds: float = 0.05, fail: Callable[[Any], bool] = lambda event: False) -> None:
        self.seconds = seconds
        self.fail = fail
        self.running = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> Any:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.seconds)
            if self.fail(event):
                raise ValueError(f"item {event} failed")
            return {"done": event}
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.parametrize(
    ("fields", "data", "cap", "peak"),
    [
        ({"MaxConcurrency": 3}, {}, 8, 3),
        ({"MaxConcurrency": 0}, {}, 5, 5),
        ({}, {}, 4, 4),
        ({"MaxConcurrencyPath": "$.concurrency"}, {"concurrency": 2}, 8, 2),
        ({"MaxConcurrencyPath": "$.concurrency"}, {"concurrency": 100}, 6, 6),
    ],
)
def test_map_runs_items_at_the_concurrency_asked_up_to_the_local_cap(
    fields: dict[str, Any], data: dict[str, Any], cap: int, peak: int
) -> None:
    gauge = Gauge()
    definition = machine(("Each", map_state(ItemsPath="$.items", **fields)))

    outcome = run(definition, {"items": list(range(12)), **data}, Functions(Work=gauge), max_concurrency=cap)

    assert outcome.status == "SUCCEEDED"
    assert gauge.peak == peak


def test_map_outputs_are_in_item_order_and_the_item_selector_sees_the_item_and_its_index() -> None:
    gauge = Gauge(seconds=0.0)
    selector = {"job.$": "$.job", "value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"}
    definition = machine(("Each", map_state(ItemsPath="$.items", ItemSelector=selector)))

    outcome = run(definition, {"job": "j", "items": ["a", "b", "c"]}, Functions(Work=gauge))

    assert [item["Payload"]["done"] for item in outcome.output] == [
        {"job": "j", "value": "a", "index": 0},
        {"job": "j", "value": "b", "index": 1},
        {"job": "j", "value": "c", "index": 2},
    ]


def test_an_inline_map_fails_with_its_failed_items_error() -> None:
    gauge = Gauge(seconds=0.0, fail=lambda event: event == 2)

    outcome = run(
        machine(("Each", map_state(ItemsPath="$.items"))), {"items": [1, 2, 3]}, Functions(Work=gauge)
    )

    assert outcome.status == "FAILED"
    assert outcome.error == "ValueError"


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ({}, "FAILED"),
        ({"ToleratedFailureCount": 1}, "SUCCEEDED"),
        ({"ToleratedFailureCount": 0, "ToleratedFailurePercentage": 50}, "FAILED"),
        ({"ToleratedFailurePercentage": 20}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 10}, "FAILED"),
    ],
)
def test_a_distributed_map_fails_past_its_tolerated_failures(tolerance: dict[str, Any], status: str) -> None:
    gauge = Gauge(seconds=0.0, fail=lambda event: event == 3)
    definition = machine(("Each", map_state("DISTRIBUTED", ItemReader=READER, **tolerance)))

    outcome = run(
        definition,
        {"bucket": "b", "key": "k"},
        Functions(Work=gauge),
        read_object=lambda bucket, key: json.dumps(list(range(8))).encode(),
    )

    assert outcome.status == status
    if status == "FAILED":
        assert outcome.error == EXCEED_TOLERATED_FAILURE
        assert outcome.cause == "The specified tolerated failure threshold was exceeded"


def test_a_failed_map_stops_starting_items() -> None:
    gauge = Gauge(seconds=0.02, fail=lambda event: True)
    functions = Functions(Work=gauge)
    definition = machine(("Each", map_state(ItemsPath="$.items", MaxConcurrency=2)))

    outcome = run(definition, {"items": list(range(50))}, functions)

    assert outcome.status == "FAILED"
    assert functions.calls("Work") == 2


def test_the_item_reader_reads_a_json_array_through_the_s3_api() -> None:
    gauge = Gauge(seconds=0.0)
    definition = machine(
        (
            "Each",
            {**map_state("DISTRIBUTED", ItemReader=READER), "ItemSelector": {"shard.$": "$$.Map.Item.Value"}},
        )
    )
    with moto_bucket() as s3:
        s3.put_object(Bucket="maas-test-models", Key="jobs/items.json", Body=b'[{"index": 0}, {"index": 1}]')

        def read_object(bucket: str, key: str) -> bytes:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

        found = run(
            definition,
            {"bucket": "maas-test-models", "key": "jobs/items.json"},
            Functions(Work=gauge),
            read_object=read_object,
        )
        missing = run(
            definition,
            {"bucket": "maas-test-models", "key": "jobs/none.json"},
            Functions(Work=gauge),
            read_object=read_object,
        )

    assert [item["Payload"]["done"] for item in found.output] == [
        {"shard": {"index": 0}},
        {"shard": {"index": 1}},
    ]
    assert missing.status == "FAILED"
    assert missing.error == "States.ItemReaderFailed"


# ---- the payload quota: 256 KiB of state data


def test_payload_bytes_is_compact_json_as_utf8_and_the_quota_is_256_kib() -> None:
    assert payload_bytes({"a": "é", "b": [1, 2]}) == len('{"a":"é","b":[1,2]}'.encode())
    assert PAYLOAD_LIMIT_BYTES == 256 * 1024
    check_payload("State", "x", "x" * (PAYLOAD_LIMIT_BYTES - 2))  # with its quotes: exactly the quota
    with pytest.raises(StatesError) as raised:
        check_payload("State", "its output", "x" * (PAYLOAD_LIMIT_BYTES - 1))
    assert raised.value.error == DATA_LIMIT_EXCEEDED
    assert raised.value.cause == (
        "state State: its output is 262145 bytes of JSON, over the 262144-byte limit on state data"
    )


CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Caught"}]
RETRY_ALL = [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}]
BIG = "x" * 1000  # 300 items' outputs of ~1 KB: over 256 KiB together, far under it each


@pytest.mark.parametrize("mode", ["INLINE", "DISTRIBUTED"])
@pytest.mark.parametrize(
    ("output_path", "status"), [(None, "FAILED"), ("$.Payload.index", "SUCCEEDED")], ids=["whole", "index"]
)
def test_a_maps_collected_outputs_over_the_quota_fail_it_past_result_path_null_and_any_catch(
    mode: str, output_path: str | None, status: str
) -> None:
    work = task("Work", Retry=RETRY_ALL)
    if output_path is not None:
        work["OutputPath"] = output_path
    each = map_state(mode, ItemsPath="$.items", MaxConcurrency=0, ResultPath=None, Catch=CATCH_ALL)
    if mode == "DISTRIBUTED":
        each = {**each, "ItemReader": READER}
        del each["ItemsPath"]
    each["ItemProcessor"]["States"]["Work"] = work
    del each["End"]
    definition = machine(
        ("Each", {**each, "Next": "Done"}),
        ("Done", {"Type": "Succeed"}),
        ("Caught", {"Type": "Fail", "Error": "Caught"}),
    )
    items = list(range(300))
    functions = Functions(Work=lambda event: {"index": event, "blob": BIG})

    outcome = run(
        definition,
        {"items": items, "bucket": "b", "key": "k"},
        functions,
        read_object=lambda bucket, key: json.dumps(items).encode(),
        max_concurrency=32,
    )

    assert outcome.status == status
    assert functions.calls("Work") == 300  # each item once: the Map itself is not retried either
    if status == "FAILED":
        assert outcome.error == DATA_LIMIT_EXCEEDED
        assert (outcome.cause or "").startswith("state Each: the array of its 300 items' outputs is ")
    else:
        assert outcome.output == {"items": items, "bucket": "b", "key": "k"}


def test_a_task_result_over_the_quota_is_neither_retried_nor_caught() -> None:
    functions = Functions(Big=lambda event: "x" * PAYLOAD_LIMIT_BYTES)
    definition = machine(
        ("Call", task("Big", {}, ResultPath=None, Retry=RETRY_ALL, Catch=CATCH_ALL)),
        ("Caught", {"Type": "Succeed"}),
    )

    outcome = run(definition, {}, functions)

    assert (outcome.status, outcome.error) == ("FAILED", DATA_LIMIT_EXCEEDED)
    assert (outcome.cause or "").startswith("state Call: the lambda:invoke result is ")
    assert functions.calls("Big") == 1


@pytest.mark.parametrize(
    ("state", "what"),
    [
        (task("Echo", {"a.$": "$.half", "b.$": "$.half"}, Catch=CATCH_ALL), "its input after Parameters"),
        ({"Type": "Pass", "Parameters": {"a.$": "$.half", "b.$": "$.half"}, "End": True}, "its input after"),
        ({"Type": "Pass", "Result": "x" * PAYLOAD_LIMIT_BYTES, "End": True}, "its output"),
        (
            map_state(ItemsPath="$.items", ItemSelector={"a.$": "$.half", "b.$": "$.half"}, Catch=CATCH_ALL),
            "item 0's input",
        ),
    ],
    ids=["task-parameters", "pass-parameters", "pass-output", "map-item-input"],
)
def test_a_states_input_or_output_over_the_quota_fails_the_execution(
    state: dict[str, Any], what: str
) -> None:
    """Each half fits; the two together do not."""
    functions = Functions()
    definition = machine(("Big", state), ("Caught", {"Type": "Succeed"}))

    outcome = run(definition, {"half": "x" * (PAYLOAD_LIMIT_BYTES // 2), "items": [1]}, functions)

    assert (outcome.status, outcome.error) == ("FAILED", DATA_LIMIT_EXCEEDED)
    assert (outcome.cause or "").startswith(f"state Big: {what}")
    assert functions.events == []


# template.yaml's JobStateMachine, run with stand-in steps: the largest job the planner makes (10,000
# shards) at the longest keys and offsets, some shards failing with Lambda's largest error.
MAX_SHARDS = 10_000
JOB = {"input_key": f"jobs/{'m' * 64}@production/{'i' * 40}/input.jsonl", "model_version": 999_999}
LARGEST_CAUSE = "x" * 32_768  # Step Functions keeps at most 32,768 characters of a cause


@functools.cache
def _job_state_machine_text() -> str:
    document = parse_cloudformation_yaml(TEMPLATE.read_text(encoding="utf-8"))
    return json.dumps(document["Resources"]["JobStateMachine"]["Properties"]["Definition"])


def job_state_machine_definition(*, output_paths: bool = True) -> dict[str, Any]:
    """The JobStateMachine Definition of template.yaml, its steps invoking `Batch`; without the shard
    states' OutputPath when `output_paths` is false (as it was before the quota was checked)."""
    definition: dict[str, Any] = json.loads(_job_state_machine_text().replace("${BatchFunctionArn}", "Batch"))
    if not output_paths:
        for shard_state in definition["States"]["RunShards"]["ItemProcessor"]["States"].values():
            del shard_state["OutputPath"]
    return definition


def stand_in_steps(event: dict[str, Any]) -> Any:
    """The batch function's steps, as small as they go: one round of shards, every 97th of them failing."""
    step = event["maas_job_step"]
    work = {"done": False, "failed": False, "bucket": "b", "items_key": "round-0.json", "round": 0}
    if step == "plan":
        return work
    if step == "shard":
        shard = event["shard"]
        if shard["index"] % 97 == 0:
            raise ValueError(LARGEST_CAUSE)
        return {"index": shard["index"], "start": shard["start"], "outcome": "answered"}
    if step == "merge":
        return {**work, "done": True, "items_key": None, "round": 1}
    return {"outcome": step}


def largest_shards(count: int) -> Callable[[str, str], bytes]:
    """An ItemReader of `count` shards at the largest offsets (S3's largest object, 5 TiB)."""
    offset = 5 * 1024**4
    shards = [
        {"index": i, "start": offset - 1, "end": offset, "first_row": 10**12, "renumber_from": 10**12}
        for i in range(count)
    ]
    body = json.dumps(shards).encode()
    return lambda bucket, key: body


@pytest.mark.parametrize(
    ("output_paths", "shards", "status"), [(True, MAX_SHARDS, "SUCCEEDED"), (False, 1_000, "FAILED")]
)
def test_the_templates_job_state_machine_runs_the_largest_job_within_the_quota(
    output_paths: bool, shards: int, status: str
) -> None:
    functions = Functions(Batch=stand_in_steps)

    outcome = run(
        job_state_machine_definition(output_paths=output_paths),
        {"job": JOB, "concurrency": MAX_SHARDS},
        functions,
        read_object=largest_shards(shards),
        max_concurrency=256,
        retry_interval_scale=0.0,
    )

    assert outcome.status == status
    if status == "SUCCEEDED":
        steps = [event["maas_job_step"] for _, event in functions.events]
        assert steps.count("shard_failed") == len(range(0, MAX_SHARDS, 97))
        assert steps[-1] == "merge"
    else:  # each child's whole input as its output: 1,000 pass 256 KiB together, and nothing catches it
        assert outcome.error == DATA_LIMIT_EXCEEDED
        assert (outcome.cause or "").startswith("state RunShards: the array of its 1000 items' outputs")


def test_a_stop_interrupts_an_execution_at_the_next_state() -> None:
    stop = threading.Event()

    def stopping(event: Any) -> Any:
        stop.set()
        return event

    definition = machine(("First", task("Stop", {}, Next="Second")), ("Second", task("Echo", {})))
    interpreter = Interpreter(
        StateMachineDefinition(definition, name="Machine"),
        invoke=Functions(Stop=stopping),
        options=InterpreterOptions(stop=stop),
    )

    with pytest.raises(ExecutionInterrupted):
        interpreter.run(INFO, {})


# ---- what is refused when the definition is loaded


def with_state(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return machine((name, state))


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            with_state("Fan", {"Type": "Parallel", "Branches": [], "End": True}),
            r"state Fan\.Type: 'Parallel'",
        ),
        (with_state("Nap", {"Type": "Wait", "Seconds": 1, "End": True}), r"state Nap\.Type: 'Wait'"),
        (with_state("Call", task(TimeoutSeconds=60)), r"state Call: field TimeoutSeconds is refused"),
        (with_state("Call", task(HeartbeatSeconds=6)), r"state Call: field HeartbeatSeconds is refused"),
        (with_state("Call", task(Credentials={})), r"state Call: field Credentials is refused"),
        (
            with_state("Put", {**task(), "Resource": "arn:aws:states:::dynamodb:putItem"}),
            r"state Put\.Resource: only arn:aws:states:::lambda:invoke",
        ),
        (
            with_state("Call", task(payload={"x.$": "States.Format('{}', $.a)"})),
            r"state Call\.Parameters.*intrinsic function States\.Format",
        ),
        (with_state("Call", task(payload={"x.$": "$.items[*]"})), r"state Call\.Parameters.*wildcards"),
        (
            with_state(
                "Call", {**task(), "Parameters": {"FunctionName": "F", "Payload": {}, "Qualifier": "1"}}
            ),
            r"state Call\.Parameters: expected exactly FunctionName, Payload",
        ),
        (with_state("Call", task(Next="Nowhere")), r"state Call\.Next: 'Nowhere' names no state"),
        (
            with_state("Call", task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}])),
            r"state Call\.Retry\[0\]\.ErrorEquals: States\.ALL must appear alone, in the last entry",
        ),
        (
            with_state("Call", task(Retry=[{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}])),
            r"state Call\.Retry\[0\]\.JitterStrategy: expected FULL or NONE",
        ),
        (
            with_state(
                "Decide",
                {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.t", "TimestampEquals": "2024", "Next": "Decide"}],
                },
            ),
            r"state Decide\.Choices\[0\]: .*Timestamp comparisons are not supported",
        ),
        (with_state("Each", map_state(ItemReader=READER)), r"state Each\.ItemReader: only a DISTRIBUTED Map"),
        (
            with_state("Each", {**map_state(), "Iterator": {}}),
            r"state Each: field Iterator is refused \(write ItemProcessor",
        ),
        (with_state("Each", map_state(ResultWriter={})), r"state Each: field ResultWriter is refused"),
        (
            with_state(
                "Each", map_state("DISTRIBUTED", ItemReader={**READER, "ReaderConfig": {"InputType": "CSV"}})
            ),
            r"state Each\.ItemReader\.ReaderConfig\.InputType: only JSON",
        ),
        (
            with_state(
                "Each",
                {
                    **map_state(),
                    "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Wait", "End": True}}},
                },
            ),
            r"state Inner\.Type: 'Wait'",
        ),
        ({**with_state("Done", {"Type": "Succeed"}), "QueryLanguage": "JSONata"}, r"only JSONPath"),
        (
            {**with_state("Done", {"Type": "Succeed"}), "TimeoutSeconds": 5},
            r"Definition: field TimeoutSeconds",
        ),
        (
            {"StartAt": "Missing", "States": {"Done": {"Type": "Succeed"}}},
            r"StartAt 'Missing' names no state",
        ),
    ],
)
def test_a_definition_is_refused_whole_naming_the_state_and_field(
    definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=f"state machine Machine: .*{message}"):
        StateMachineDefinition(definition, name="Machine")
