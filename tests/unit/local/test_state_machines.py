"""A template's state machines as the local stack deploys them: read from the template (checked whole when it
is read), resolved (Name, DefinitionSubstitutions, `${Name}` placeholders, the function alias's ARN),
the function environments that run them, and the executions remembered across a restart. No server."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from maas.errors import ConfigurationError
from maas.local.cloudformation import IntrinsicResolver, TemplateError
from maas.local.lambdas import FunctionEnvironments, LocalFunction, function_name_of, local_function_arn
from maas.local.sam import FunctionSpec
from maas.local.state_machines import (
    LocalLambdaInvoker,
    RememberedExecution,
    RememberedExecutions,
    check_functions,
    local_state_machine,
    retry_interval_scale_from_environment,
    shard_workers_from_environment,
    state_machine_references,
)
from maas.local.step_functions import RESOURCE_NOT_FOUND, DefinitionError, LambdaServiceError
from maas.local.template_reader import load_template, parse_template
from tests.support.paths import ROOT
from tests.unit.local.job_state_machine import job_state_machine

HEAD = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Resources:
  Steps:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: steps/, Handler: app.handler, AutoPublishAlias: live}
"""
ALIAS_ARN = "arn:aws:lambda:us-east-1:123456789012:function:Steps:live"


def resolver_for(template: Any, **resources: str) -> IntrinsicResolver:
    return IntrinsicResolver.for_template(template, resources={"Steps.Alias": ALIAS_ARN, **resources})


def test_the_job_state_machine_resolves_to_the_definition_aws_would_run() -> None:
    template = parse_template(HEAD + job_state_machine("Steps"), {"Stage": "qa"})

    machine = local_state_machine(template.state_machines["JobStateMachine"], resolver_for(template))

    assert machine.name == "maas-qa-jobs"
    assert machine.arn == "arn:aws:states:us-east-1:123456789012:stateMachine:maas-qa-jobs"
    states = machine.definition.document["States"]
    assert states["PlanJob"]["Parameters"]["FunctionName"] == ALIAS_ARN
    assert (
        states["RunShards"]["ItemProcessor"]["States"]["RunShard"]["Parameters"]["FunctionName"] == ALIAS_ARN
    )
    assert {function for _, function in machine.definition.lambda_functions()} == {ALIAS_ARN}


def test_references_to_a_state_machine_resolve_to_its_arn_and_name() -> None:
    template = parse_template(HEAD + job_state_machine("Steps"))

    references, attributes = state_machine_references(
        template.state_machines.values(), resolver_for(template)
    )

    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:maas-dev-jobs"
    assert references == {"JobStateMachine": arn}
    assert attributes == {"JobStateMachine": {"Arn": arn, "Name": "maas-dev-jobs"}}


def test_a_cloudformation_state_machine_with_a_definition_string_resolves_too() -> None:
    text = (
        HEAD
        + """\
  Machine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      StateMachineName: plain
      RoleArn: arn:aws:iam::123456789012:role/x
      DefinitionString: '{"StartAt": "Call", "States": {"Call": {"Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "${Fn}", "Payload.$": "$"}, "End": true}}}'
      DefinitionSubstitutions:
        Fn: !Ref Steps.Alias
"""
    )
    template = parse_template(text)

    machine = local_state_machine(template.state_machines["Machine"], resolver_for(template))

    assert machine.name == "plain"
    assert machine.definition.lambda_functions() == [("Call", ALIAS_ARN)]


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (
            job_state_machine("Steps").replace("Type: Choice", "Type: Wait"),
            r"state machine JobStateMachine: state CheckWork\.Type: 'Wait' is not interpreted locally",
        ),
        (
            job_state_machine("Steps").replace("MaxConcurrencyPath: $.concurrency", "TimeoutSeconds: 9"),
            r"state RunShards: field TimeoutSeconds is refused",
        ),
        (
            job_state_machine("Steps").replace(
                "FunctionName: ${BatchFunctionArn}", "FunctionName: !Ref Steps", 1
            ),
            r"JobStateMachine\.Definition: intrinsic Ref inside the definition",
        ),
        (
            "  Machine:\n    Type: AWS::Serverless::StateMachine\n    Properties: {DefinitionUri: sm.json}\n",
            r"Machine\.DefinitionUri: the local stack runs inline definitions only",
        ),
    ],
)
def test_a_template_whose_state_machine_the_stack_would_not_run_as_aws_fails_to_load(
    resource: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_template(HEAD + resource)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("BatchFunctionArn: !Ref Steps.Alias", "Other: x"),
            r"\$\{BatchFunctionArn\} has no DefinitionSubstitutions",
        ),
        (("Type: STANDARD", "Type: EXPRESS"), r"JobStateMachine\.Type: only STANDARD"),
        (
            ("BatchFunctionArn: !Ref Steps.Alias", "BatchFunctionArn: !GetAtt Nothing.Arn"),
            r"BatchFunctionArn",
        ),
    ],
)
def test_a_state_machine_without_local_values_is_refused_when_the_stack_resolves_it(
    edit: tuple[str, str], message: str
) -> None:
    template = parse_template(HEAD + job_state_machine("Steps").replace(*edit))

    with pytest.raises(TemplateError, match=message):
        local_state_machine(template.state_machines["JobStateMachine"], resolver_for(template))


def test_a_function_name_that_is_not_a_template_function_fails_the_start() -> None:
    template = parse_template(HEAD + job_state_machine("Steps"))
    machine = local_state_machine(
        template.state_machines["JobStateMachine"],
        IntrinsicResolver.for_template(template, resources={"Steps.Alias": "arn:aws:lambda:::function:Gone"}),
    )

    with pytest.raises(TemplateError, match=r"state PlanJob: FunctionName .*Gone is not a function"):
        check_functions([machine], LocalLambdaInvoker({}))


def test_the_projects_template_state_machines_run_locally_and_invoke_its_functions() -> None:
    template = load_template(ROOT / "template.yaml")
    if not template.state_machines:
        pytest.skip("template.yaml declares no state machine yet")
    resources = {
        f"{rid}.Alias": local_function_arn(rid, "us-east-1", "123456789012", "live")
        for rid in template.functions
    }
    resolver = IntrinsicResolver.for_template(template, resources=resources)

    for spec in template.state_machines.values():
        machine = local_state_machine(spec, resolver)
        for _, function in machine.definition.lambda_functions():
            assert function_name_of(function) in template.functions


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("BatchFunction", "BatchFunction"),
        ("BatchFunction:live", "BatchFunction"),
        ("arn:aws:lambda:us-east-1:123456789012:function:BatchFunction", "BatchFunction"),
        ("arn:aws:lambda:us-east-1:123456789012:function:BatchFunction:live", "BatchFunction"),
        ("123456789012:function:BatchFunction:7", "BatchFunction"),
    ],
)
def test_function_names_in_every_form_lambda_takes(reference: str, name: str) -> None:
    assert function_name_of(reference) == name


# ---- execution environments


HANDLER = """\
import threading
import time

LOADED = time.monotonic()


def handler(event, context):
    time.sleep(event.get("seconds", 0))
    return {"module": __name__, "thread": threading.get_ident()}
"""


@pytest.fixture
def environment(tmp_path: Path) -> LocalFunction:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(HANDLER)
    spec = FunctionSpec("Fn", "fn/", "app.handler", None, 30, 128, {})
    return LocalFunction(spec=spec, root=tmp_path, memory_mb=128, timeout_seconds=30)


def invoke_at_once(environments: FunctionEnvironments, count: int, seconds: float) -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def one() -> None:
        answer = environments.invoke({"seconds": seconds})
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_invokes_get_environments_of_their_own_up_to_the_limit(environment: LocalFunction) -> None:
    environments = FunctionEnvironments(environment, limit=3)

    answers = invoke_at_once(environments, 6, 0.1)

    assert environments.size == 3
    assert len({answer["module"] for answer in answers}) == 3  # each imported the handler file itself


def test_invokes_one_after_another_reuse_one_environment(environment: LocalFunction) -> None:
    environments = FunctionEnvironments(environment, limit=4)

    modules = {environments.invoke({})["module"] for _ in range(5)}

    assert environments.size == 1
    assert len(modules) == 1


def test_an_environment_busy_elsewhere_is_not_handed_out(environment: LocalFunction) -> None:
    environments = FunctionEnvironments(environment, limit=2)
    first_module = environment.invoke({})["module"]
    assert environment.try_claim()  # the gateway or a poller holds the first environment
    try:
        started = time.monotonic()
        answer = environments.invoke({})
    finally:
        environment.release()

    assert answer["module"] != first_module
    assert time.monotonic() - started < 5


def test_the_invoker_maps_an_alias_arn_to_its_function_and_refuses_an_unknown_one(
    environment: LocalFunction,
) -> None:
    invoker = LocalLambdaInvoker({"Fn": FunctionEnvironments(environment, limit=1)})

    answer = invoker("arn:aws:lambda:us-east-1:123456789012:function:Fn:live", {})

    assert answer["module"].startswith("maas_local_function_fn_")
    with pytest.raises(LambdaServiceError) as refused:
        invoker("arn:aws:lambda:us-east-1:123456789012:function:Other", {})
    assert refused.value.error == RESOURCE_NOT_FOUND


# ---- remembered executions and settings


def test_running_executions_are_remembered_until_they_end(tmp_path: Path) -> None:
    remembered = RememberedExecutions(tmp_path)
    remembered.add(RememberedExecution("maas-dev-jobs", "job-1", '{"job": 1}'))
    remembered.add(RememberedExecution("maas-dev-jobs", "job-2", '{"job": 2}'))
    remembered.remove("maas-dev-jobs", "job-1")

    assert RememberedExecutions(tmp_path).load() == [
        RememberedExecution("maas-dev-jobs", "job-2", '{"job": 2}')
    ]


def test_an_unreadable_remembered_file_restarts_nothing(tmp_path: Path) -> None:
    remembered = RememberedExecutions(tmp_path)
    remembered.path.parent.mkdir(parents=True)
    remembered.path.write_text("{not json")

    assert remembered.load() == []


@pytest.mark.parametrize(("value", "workers"), [("", 4), ("1", 1), (" 16 ", 16)])
def test_shard_workers_from_the_environment(value: str, workers: int) -> None:
    assert shard_workers_from_environment({"MAAS_LOCAL_SHARD_WORKERS": value}) == workers


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_shard_workers_must_be_a_whole_number_of_one_or_more(value: str) -> None:
    with pytest.raises(ConfigurationError, match="MAAS_LOCAL_SHARD_WORKERS"):
        shard_workers_from_environment({"MAAS_LOCAL_SHARD_WORKERS": value})


@pytest.mark.parametrize(("value", "scale"), [("", 1.0), ("0.001", 0.001), ("0", 0.0)])
def test_the_retry_interval_scale_from_the_environment(value: str, scale: float) -> None:
    assert retry_interval_scale_from_environment({"MAAS_LOCAL_RETRY_INTERVAL_SCALE": value}) == scale


@pytest.mark.parametrize("value", ["-1", "fast", "nan"])
def test_the_retry_interval_scale_must_be_a_number_of_zero_or_more(value: str) -> None:
    with pytest.raises(ConfigurationError, match="MAAS_LOCAL_RETRY_INTERVAL_SCALE"):
        retry_interval_scale_from_environment({"MAAS_LOCAL_RETRY_INTERVAL_SCALE": value})


def test_definition_errors_are_template_errors() -> None:
    assert issubclass(DefinitionError, TemplateError)
