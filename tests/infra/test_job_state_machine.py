"""template.yaml's JobStateMachine: a batch job too large for one invocation runs as a plan, a Distributed
Map of shards retried alone, and a merge loop, every step on the batch function's alias; and the batch
function can start it, and nothing else, at the ARN the state machine really has."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from maas.local.asl_paths import expand_template, select, with_result
from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from maas.local.step_functions import PAYLOAD_LIMIT_BYTES, payload_bytes
from tests.infra.deployed import ACCOUNT, PARTITION, REGION, TEMPLATE, Deployment, deploy, translate

STATE_MACHINE = "JobStateMachine"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
STEP_FUNCTION = "${BatchFunctionArn}"
BATCH_ALIAS = "<BatchFunctionAliaslive>"
TOP_STATES = {
    "PlanJob": "Task",
    "CheckWork": "Choice",
    "RunShards": "Map",
    "MergeShards": "Task",
    "FailJob": "Task",
    "JobFailed": "Fail",
    "JobSucceeded": "Succeed",
}
SHARD_STATES = {"RunShard": "Task", "RecordShardFailure": "Task"}
# The step each Task asks the batch function for (`maas_job_step` in its payload).
STEPS = {
    "PlanJob": "plan",
    "RunShard": "shard",
    "RecordShardFailure": "shard_failed",
    "MergeShards": "merge",
    "FailJob": "fail",
}


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


@pytest.fixture(scope="module")
def deployment(translated: dict[str, Any]) -> Deployment:
    return deploy(translated)


@pytest.fixture(scope="module")
def definition(deployment: Deployment) -> dict[str, Any]:
    """The definition as Step Functions receives it: SAM's DefinitionString, parsed."""
    written: dict[str, Any] = json.loads(
        deployment.resources[STATE_MACHINE]["Properties"]["DefinitionString"]
    )
    return written


def _states(scope: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = scope["States"]
    return states


def _all_states(definition: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in _states(definition).items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _all_states(state["ItemProcessor"])


def test_the_definition_deployed_is_the_one_written_in_the_template(definition: dict[str, Any]) -> None:
    """The local stack interprets the Definition as written; AWS runs SAM's translation of it: the same."""
    document = parse_cloudformation_yaml(TEMPLATE.read_text(encoding="utf-8"))

    assert document["Resources"][STATE_MACHINE]["Properties"]["Definition"] == definition


def test_it_is_a_standard_state_machine_named_after_the_stage(translated: dict[str, Any]) -> None:
    deployed = deploy(translated, {"Stage": "prod"}).resources[STATE_MACHINE]["Properties"]

    assert deployed["StateMachineName"] == "maas-prod-jobs"
    assert deployed["StateMachineType"] == "STANDARD"
    assert deployed["TracingConfiguration"] == {"Enabled": True}


def test_the_definition_has_exactly_the_plan_map_and_merge_states(definition: dict[str, Any]) -> None:
    states = _states(definition)

    assert definition["StartAt"] == "PlanJob"
    assert {name: state["Type"] for name, state in states.items()} == TOP_STATES
    processor = states["RunShards"]["ItemProcessor"]
    assert processor["StartAt"] == "RunShard"
    assert {name: state["Type"] for name, state in _states(processor).items()} == SHARD_STATES


def test_every_transition_names_a_state_of_its_own_scope(definition: dict[str, Any]) -> None:
    for scope in (definition, _states(definition)["RunShards"]["ItemProcessor"]):
        names = set(_states(scope))
        targets = {scope["StartAt"]}
        for state in _states(scope).values():
            targets |= {state[key] for key in ("Next", "Default") if key in state}
            targets |= {rule["Next"] for key in ("Choices", "Catch") for rule in state.get(key, [])}
        # Each state is reachable, and nothing leads outside the scope.
        assert targets == names


def test_the_map_is_distributed_reads_its_items_from_s3_and_is_bounded_by_the_job(
    definition: dict[str, Any],
) -> None:
    run_shards = _states(definition)["RunShards"]

    assert run_shards["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert run_shards["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.work.bucket", "Key.$": "$.work.items_key"},
    }
    assert run_shards["ItemSelector"] == {"job.$": "$.job", "shard.$": "$$.Map.Item.Value"}
    assert run_shards["MaxConcurrencyPath"] == "$.concurrency"
    # The Map's results are the shards' documents in S3, not its output (the children's outputs are only
    # their indexes: see the quota test below).
    assert run_shards["ResultPath"] is None
    assert run_shards["Next"] == "MergeShards"


def test_a_shard_is_retried_alone_with_backoff_then_recorded_as_failed(definition: dict[str, Any]) -> None:
    shard_states = _states(_states(definition)["RunShards"]["ItemProcessor"])
    run_shard = shard_states["RunShard"]

    [retry] = run_shard["Retry"]
    assert retry["ErrorEquals"] == ["States.ALL"]
    assert retry["MaxAttempts"] >= 2
    assert retry["BackoffRate"] > 1
    assert retry["JitterStrategy"] == "FULL"
    assert run_shard["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "RecordShardFailure"}
    ]
    assert run_shard["End"] is True
    assert shard_states["RecordShardFailure"]["Parameters"]["Payload"]["failure.$"] == "$.failure"
    for state in shard_states.values():
        assert (state["ResultPath"], state["OutputPath"]) == (None, "$.shard.index")


# The largest job: the most shards the planner makes, at S3's longest key and largest object (5 TiB), each
# shard failing with the longest cause Step Functions keeps (32,768 characters).
MAX_SHARDS = 10_000
LARGEST_JOB = {"input_key": "k" * 1024, "model_version": 10**12}
LARGEST_SHARD = {
    "index": MAX_SHARDS - 1,
    "start": 5 * 1024**4 - 1,
    "end": 5 * 1024**4,
    "first_row": 10**12,
    "renumber_from": 10**12,
}
LARGEST_FAILURE = {"Error": "e" * 256, "Cause": "c" * 32_768}
LARGEST_RESULT = {"ExecutedVersion": "$LATEST", "Payload": {"big": "p" * 100_000}, "StatusCode": 200}


def _after(state: Mapping[str, Any], state_input: Any, result: Any) -> Any:
    """A Task's output: its result through ResultSelector, ResultPath and OutputPath."""
    if "ResultSelector" in state:
        result = expand_template(state["ResultSelector"], result, {})
    return select(
        with_result(state_input, state.get("ResultPath", "$"), result), state.get("OutputPath", "$")
    )


def test_the_maps_collected_outputs_stay_far_under_the_payload_quota_for_the_largest_job(
    definition: dict[str, Any],
) -> None:
    """A Distributed Map gathers every child's output into one array before its ResultPath applies; past
    256 KiB the state fails with States.DataLimitExceeded, which no Catch takes, and the job would never
    get a status. A child ends in RunShard or, after RunShard's Catch, in RecordShardFailure."""
    run_shards = _states(definition)["RunShards"]
    shard_states = _states(run_shards["ItemProcessor"])
    context = {"Map": {"Item": {"Index": MAX_SHARDS - 1, "Value": LARGEST_SHARD}}}
    child_input = expand_template(
        run_shards["ItemSelector"], {"job": LARGEST_JOB, "concurrency": MAX_SHARDS}, context
    )
    [catcher] = shard_states["RunShard"]["Catch"]
    caught = with_result(child_input, catcher["ResultPath"], LARGEST_FAILURE)

    answered = _after(shard_states["RunShard"], child_input, LARGEST_RESULT)
    recorded = _after(shard_states[catcher["Next"]], caught, LARGEST_RESULT)
    largest = max((answered, recorded), key=payload_bytes)
    collected = payload_bytes([largest] * MAX_SHARDS)

    assert collected < PAYLOAD_LIMIT_BYTES // 4, f"{collected} bytes for {MAX_SHARDS} shards"
    assert largest == LARGEST_SHARD["index"]


def test_every_step_retries_with_backoff_and_a_failure_ends_in_fail_job(definition: dict[str, Any]) -> None:
    states = _states(definition)
    for name, state in _all_states(definition):
        if state["Type"] == "Task":
            [retry] = state["Retry"]
            assert retry["MaxAttempts"] >= 2 and retry["BackoffRate"] > 1, name
            assert retry["JitterStrategy"] == "FULL", name
    for name in ("PlanJob", "RunShards", "MergeShards"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "FailJob"}
        ]
    assert states["FailJob"]["Next"] == "JobFailed"


def test_merge_loops_back_until_the_work_is_done_or_failed(definition: dict[str, Any]) -> None:
    states = _states(definition)

    assert states["PlanJob"]["Next"] == states["MergeShards"]["Next"] == "CheckWork"
    assert states["PlanJob"]["ResultSelector"] == states["MergeShards"]["ResultSelector"]
    assert states["PlanJob"]["ResultPath"] == states["MergeShards"]["ResultPath"] == "$.work"
    assert states["CheckWork"]["Choices"] == [
        {"Variable": "$.work.failed", "BooleanEquals": True, "Next": "JobFailed"},
        {"Variable": "$.work.done", "BooleanEquals": True, "Next": "JobSucceeded"},
    ]
    assert states["CheckWork"]["Default"] == "RunShards"


def test_every_step_invokes_the_batch_functions_alias(
    definition: dict[str, Any], deployment: Deployment
) -> None:
    tasks = {name: state for name, state in _all_states(definition) if state["Type"] == "Task"}

    assert set(tasks) == set(STEPS)
    for name, task in tasks.items():
        assert task["Resource"] == LAMBDA_INVOKE, name
        assert task["Parameters"]["FunctionName"] == STEP_FUNCTION, name
        assert task["Parameters"]["Payload"]["maas_job_step"] == STEPS[name], name
    substitutions = deployment.resources[STATE_MACHINE]["Properties"]["DefinitionSubstitutions"]
    assert substitutions == {"BatchFunctionArn": BATCH_ALIAS}


def test_the_state_machine_may_invoke_only_the_batch_functions_alias(deployment: Deployment) -> None:
    invokes = {
        resource
        for statement in deployment.allowed_statements("JobStateMachineRole")
        if any(action.startswith("lambda:") for action in _as_list(statement["Action"]))
        for resource in _as_list(statement["Resource"])
    }

    assert invokes == {BATCH_ALIAS}


def test_the_batch_function_starts_the_job_state_machine_at_the_arn_it_has(
    translated: dict[str, Any],
) -> None:
    """The batch function is given the ARN built from the state machine's name (a Ref would be a cycle);
    it must be the ARN CloudFormation gives the state machine, for any stage."""
    for stage in ("dev", "prod-eu"):
        deployment = deploy(translated, {"Stage": stage})
        name = deployment.resources[STATE_MACHINE]["Properties"]["StateMachineName"]
        arn = f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        environment = deployment.resources["BatchFunction"]["Properties"]["Environment"]["Variables"]

        assert environment["MAAS_JOB_STATE_MACHINE_ARN"] == arn
        assert _grants(deployment, "BatchFunctionRole", "states:") == {("states:StartExecution", arn)}


def test_the_batch_function_deletes_only_shard_outputs(deployment: Deployment) -> None:
    bucket = f"arn:aws:s3:::maas-dev-{ACCOUNT}-{REGION}"

    assert _grants(deployment, "BatchFunctionRole", "s3:DeleteObject") == {
        ("s3:DeleteObject", f"{bucket}/jobs/*/shards/*.jsonl")
    }


def test_the_shard_parameters_reach_the_batch_function(translated: dict[str, Any]) -> None:
    deployment = deploy(translated, {"JobShardBytes": "1048576", "JobShardConcurrency": "8"})
    environment = deployment.resources["BatchFunction"]["Properties"]["Environment"]["Variables"]

    assert environment["MAAS_JOB_SHARD_BYTES"] == "1048576"
    assert environment["MAAS_JOB_SHARD_CONCURRENCY"] == "8"
    defaults = translated["Parameters"]
    assert (defaults["JobShardBytes"]["Default"], defaults["JobShardConcurrency"]["Default"]) == (
        67108864,
        100,
    )


def _grants(deployment: Deployment, role: str, prefix: str) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for statement in deployment.allowed_statements(role)
        for action in _as_list(statement["Action"])
        if action.startswith(prefix)
        for resource in _as_list(statement["Resource"])
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
