"""template.yaml's event topology: S3 job uploads -> SQS -> batch, async requests -> SQS -> async,
each queue with a dead-letter queue, a visibility timeout Lambda can live with, and partial batch failures."""

from __future__ import annotations

from typing import Any

import pytest

from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from maas.service.job_layout import INPUT_FORMATS, INPUT_STEM, JOBS_FOLDER, OUTPUT_NAME, STATUS_NAME
from tests.support.paths import ROOT

DOCUMENT = parse_cloudformation_yaml((ROOT / "template.yaml").read_text(encoding="utf-8"))
RESOURCES: dict[str, Any] = DOCUMENT["Resources"]
GLOBAL_TIMEOUT = DOCUMENT["Globals"]["Function"]["Timeout"]
# What AWS advises for an SQS event source: a visibility timeout at least six times the function's timeout.
VISIBILITY_FACTOR = 6
# SAM's reference to the alias AutoPublishAlias creates.
ALIAS_REFERENCE = ".Alias"


def _sqs_events() -> list[tuple[str, dict[str, Any]]]:
    """(function, mapping properties) of each SQS event source mapping, with the queue as `Queue`."""
    found = []
    for resource in RESOURCES.values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            properties = resource["Properties"]
            function = properties["FunctionName"]["Ref"].removesuffix(ALIAS_REFERENCE)
            found.append((function, {**properties, "Queue": properties["EventSourceArn"]}))
    return found


def test_there_are_two_queue_driven_functions() -> None:
    assert sorted(rid for rid, _ in _sqs_events()) == ["AsyncFunction", "BatchFunction"]


def test_each_queue_invokes_its_functions_live_alias() -> None:
    """The published version, as every other event source: SnapStart applies to published versions only."""
    for function, source in _sqs_events():
        assert source["FunctionName"] == {"Ref": f"{function}{ALIAS_REFERENCE}"}
        assert RESOURCES[function]["Properties"]["AutoPublishAlias"] == "live"


@pytest.mark.parametrize(("function", "source"), _sqs_events())
def test_each_queue_has_a_dead_letter_queue_and_reports_partial_failures(
    function: str, source: dict[str, Any]
) -> None:
    queue_id = source["Queue"]["Fn::GetAtt"][0]
    queue = RESOURCES[queue_id]["Properties"]
    timeout = RESOURCES[function]["Properties"].get("Timeout", GLOBAL_TIMEOUT)

    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= VISIBILITY_FACTOR * timeout
    redrive = queue["RedrivePolicy"]
    dead_letter_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert RESOURCES[dead_letter_id]["Type"] == "AWS::SQS::Queue"
    assert 1 < redrive["maxReceiveCount"] <= 5
    # Messages outlive a weekend in the dead-letter queue, so a person can still look at them.
    assert RESOURCES[dead_letter_id]["Properties"]["MessageRetentionPeriod"] >= 4 * 24 * 3600
    for queue_props in (queue, RESOURCES[dead_letter_id]["Properties"]):
        assert queue_props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue_props


def test_only_job_inputs_start_jobs() -> None:
    """Outputs live next to inputs under jobs/, so the rules must match input names, not the prefix alone."""
    rules = RESOURCES["ModelBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    filters = []
    for rule in rules:
        assert rule["Queue"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
        assert rule["Event"].startswith("s3:ObjectCreated:")
        named = {r["Name"]: r["Value"] for r in rule["Filter"]["S3Key"]["Rules"]}
        filters.append((named["prefix"], named["suffix"]))
    assert sorted(filters) == sorted((f"{JOBS_FOLDER}/", f"/{INPUT_STEM}.{fmt}") for fmt in INPUT_FORMATS)
    for written in (OUTPUT_NAME, STATUS_NAME):
        key = f"{JOBS_FOLDER}/seed-mlp/job-1/{written}"
        assert not any(key.startswith(prefix) and key.endswith(suffix) for prefix, suffix in filters)


def test_s3_may_send_to_the_jobs_queue_only_from_the_model_bucket() -> None:
    policy = RESOURCES["JobsQueuePolicy"]["Properties"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    statement = statements["ModelBucketJobUploads"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    bucket_name = RESOURCES["ModelBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    source, variables = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source == "arn:${AWS::Partition}:s3:::${Bucket}"
    assert variables["Bucket"]["Fn::If"][:2] == ["CreateBucket", {"Fn::Sub": bucket_name}]
    assert "JobsQueuePolicy" in _as_list(RESOURCES["ModelBucket"]["DependsOn"])


def test_one_job_per_batch_invocation_and_the_longest_timeout_lambda_allows() -> None:
    batch = RESOURCES["BatchFunction"]["Properties"]
    assert batch["Timeout"] == 900
    assert RESOURCES["BatchJobNotifications"]["Properties"]["BatchSize"] == 1


def test_the_warm_up_schedule_targets_the_infer_function_and_is_off_without_models() -> None:
    infer = RESOURCES["InferFunction"]["Properties"]
    schedule = infer["Events"]["WarmUp"]
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["State"] == {"Fn::If": ["HasWarmModels", "ENABLED", "DISABLED"]}
    assert infer["Environment"]["Variables"]["MAAS_WARM_MODELS"] == {"Ref": "WarmModels"}


def test_the_outputs_name_every_queue() -> None:
    outputs = DOCUMENT["Outputs"]
    for queue in ("JobsQueue", "JobsDeadLetterQueue", "AsyncQueue", "AsyncDeadLetterQueue"):
        assert outputs[f"{queue}Url"]["Value"] == {"Ref": queue}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
