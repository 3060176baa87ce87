"""A redeploy after `sam delete` adopts the retained bucket (infra/retained_bucket.py, run by `make deploy`).

Given moto's CloudFormation, S3 and SQS: a stack of the same name was deleted and its fixed-name bucket, with
its SSE-KMS key and job notifications to the deleted stack's queue, was kept. The adoption overrides name the
bucket and its key only when no stack of that name exists; after the new stack is up, the bucket's job
notifications go to the new queue and its other notifications stay.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from infra.retained_bucket import (
    JOB_INPUT_SUFFIXES,
    adoption_overrides,
    fixed_bucket_name,
    main,
    reconnect_job_notifications,
    retained_summary,
)
from moto import mock_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
STACK = "maas"
BUCKET = fixed_bucket_name("dev", ACCOUNT, REGION)
# Only what the script reads: the ExistingBucketName parameter and the outputs, as template.yaml names them.
WHERE = {"stack": STACK, "account": ACCOUNT, "region": REGION}
STACK_TEMPLATE = json.dumps(
    {
        "Parameters": {
            "Stage": {"Type": "String", "Default": "dev"},
            "ExistingBucketName": {"Type": "String", "Default": ""},
        },
        "Resources": {"JobsQueue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "JobsQueueArn": {"Value": {"Fn::GetAtt": ["JobsQueue", "Arn"]}},
            "ModelBucketName": {"Value": BUCKET},
        },
    }
)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        yield {
            name: boto3.client(name, region_name=REGION) for name in ("cloudformation", "s3", "sqs", "kms")
        }


def _deploy(aws: dict[str, Any], existing_bucket: str = "") -> str:
    """The stack, created; its JobsQueue's ARN."""
    aws["cloudformation"].create_stack(
        StackName=STACK,
        TemplateBody=STACK_TEMPLATE,
        Parameters=[{"ParameterKey": "ExistingBucketName", "ParameterValue": existing_bucket}],
    )
    outputs = aws["cloudformation"].describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
    return str(next(o["OutputValue"] for o in outputs if o["OutputKey"] == "JobsQueueArn"))


def _retained_bucket(aws: dict[str, Any], queue_arn: str) -> str:
    """The bucket as the deleted stack left it: SSE-KMS with its key, job rules to `queue_arn`, plus one
    notification of the owner's own; returns the key's ARN."""
    key = aws["kms"].create_key()["KeyMetadata"]["Arn"]
    aws["s3"].create_bucket(Bucket=BUCKET)
    aws["s3"].put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
            ]
        },
    )
    exports = aws["sqs"].create_queue(QueueName="owners-exports")["QueueUrl"]
    exports_arn = aws["sqs"].get_queue_attributes(QueueUrl=exports, AttributeNames=["QueueArn"])
    rules = [_rule(queue_arn, "jobs/", suffix) for suffix in JOB_INPUT_SUFFIXES]
    rules.append(_rule(exports_arn["Attributes"]["QueueArn"], "exports/", ".csv"))
    aws["s3"].put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": rules}
    )
    return str(key)


def _rule(queue_arn: str, prefix: str, suffix: str) -> dict[str, Any]:
    return {
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {
            "Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}, {"Name": "suffix", "Value": suffix}]}
        },
    }


def _queues_by_prefix(aws: dict[str, Any]) -> dict[str, set[str]]:
    configured = aws["s3"].get_bucket_notification_configuration(Bucket=BUCKET)["QueueConfigurations"]
    found: dict[str, set[str]] = {}
    for configuration in configured:
        rules = {r["Name"].lower(): r["Value"] for r in configuration["Filter"]["Key"]["FilterRules"]}
        found.setdefault(rules["prefix"] + "*" + rules["suffix"], set()).add(configuration["QueueArn"])
    return found


def test_after_the_stack_was_deleted_the_overrides_adopt_its_bucket_and_key(aws: dict[str, Any]) -> None:
    old_queue = _deploy(aws)
    key = _retained_bucket(aws, old_queue)
    aws["cloudformation"].delete_stack(StackName=STACK)

    overrides = adoption_overrides(aws["cloudformation"], aws["s3"], stack=STACK, bucket=BUCKET)

    assert overrides == [f"ExistingBucketName={BUCKET}", f"KmsKeyArn={key}"]


def test_a_stack_that_exists_or_a_bucket_that_does_not_needs_no_overrides(aws: dict[str, Any]) -> None:
    assert adoption_overrides(aws["cloudformation"], aws["s3"], stack=STACK, bucket=BUCKET) == []
    _retained_bucket(aws, _deploy(aws))

    assert adoption_overrides(aws["cloudformation"], aws["s3"], stack=STACK, bucket=BUCKET) == []


def test_the_adopted_bucket_sends_jobs_to_the_new_stacks_queue_and_keeps_its_other_notifications(
    aws: dict[str, Any],
) -> None:
    old_queue = _deploy(aws)
    _retained_bucket(aws, old_queue)
    aws["cloudformation"].delete_stack(StackName=STACK)
    new_queue = _deploy(aws, existing_bucket=BUCKET)
    exports = _queues_by_prefix(aws)["exports/*.csv"]

    changed = reconnect_job_notifications(aws["cloudformation"], aws["s3"], **WHERE)

    assert changed == BUCKET
    assert new_queue != old_queue
    assert _queues_by_prefix(aws) == {
        **{f"jobs/*{suffix}": {new_queue} for suffix in JOB_INPUT_SUFFIXES},
        "exports/*.csv": exports,
    }
    # Run again (every `make deploy` runs it): nothing left to change.
    assert reconnect_job_notifications(aws["cloudformation"], aws["s3"], **WHERE) is None


def test_a_stack_that_created_its_bucket_is_left_alone(aws: dict[str, Any]) -> None:
    queue = _deploy(aws)
    _retained_bucket(aws, "arn:aws:sqs:us-east-1:123456789012:someone-elses")

    changed = reconnect_job_notifications(aws["cloudformation"], aws["s3"], **WHERE)

    assert changed is None
    assert queue not in set().union(*_queues_by_prefix(aws).values())


def test_teardown_says_what_is_kept_and_why(aws: dict[str, Any]) -> None:
    _deploy(aws)

    summary = retained_summary(aws["cloudformation"], stack=STACK)

    assert f"s3://{BUCKET}" in summary
    assert "DeletionPolicy: Retain" in summary
    assert "make deploy" in summary


def test_the_script_prints_the_overrides_on_one_line_for_sam_deploy(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _retained_bucket(aws, _deploy(aws))
    aws["cloudformation"].delete_stack(StackName=STACK)

    assert main(["overrides", "--stack", STACK, "--region", REGION]) == 0

    printed = capsys.readouterr()
    assert printed.out.startswith(f"ExistingBucketName={BUCKET} KmsKeyArn=arn:aws:kms:")
    assert printed.out.count("\n") == 1
    assert BUCKET in printed.err
