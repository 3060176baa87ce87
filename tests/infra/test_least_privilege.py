"""Least privilege, proved on what SAM and CloudFormation would deploy: each function's role, and the job
state machine's, may do exactly its job, for every way the stack can be configured (bucket and key created
or brought, signing on or off)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.infra.deployed import ACCOUNT, REGION, Deployment, deploy, translate

CREATED_BUCKET = f"arn:aws:s3:::maas-dev-{ACCOUNT}-{REGION}"
CREATED_KEY = "<ModelKey.Arn>"
EXISTING_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
HMAC_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mac-0000-1111"
SIGNING_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:maas/manifest-hmac-AbCdEf"
XRAY_MANAGED = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
BASIC_MANAGED = [XRAY_MANAGED, "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
# The state machine writes no logs of its own (Step Functions keeps the execution history): tracing only.
MANAGED_POLICIES = {"JobStateMachineRole": [XRAY_MANAGED]}
DATA_ACTION_PREFIXES = ("s3:", "kms:", "sqs:", "secretsmanager:", "states:", "lambda:")
JOB_STATE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:maas-dev-jobs"
# A Distributed Map's child executions, as AWS documents them for the state machine's role.
JOB_EXECUTIONS = (
    f"arn:aws:states:{REGION}:{ACCOUNT}:execution:maas-dev-jobs/*",
    f"arn:aws:states:{REGION}:{ACCOUNT}:execution:maas-dev-jobs:*",
)
BATCH_ALIAS = "<BatchFunctionAliaslive>"
VIA_S3 = {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "created bucket and key": {},
    "existing bucket without KMS": {"ExistingBucketName": "corp-models"},
    "existing bucket and key": {"ExistingBucketName": "corp-models", "KmsKeyArn": EXISTING_KEY},
    "created bucket, existing key": {"KmsKeyArn": EXISTING_KEY},
    "signing with a KMS HMAC key": {"ManifestSigningKmsKeyArn": HMAC_KEY},
    "signing with a secret": {"ManifestSigningSecretArn": SIGNING_SECRET},
}

Grant = tuple[str, str]


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


def _grants(deployment: Deployment, role: str) -> set[Grant]:
    """(action, resource) pairs; a condition other than kms:ViaService=S3 would show up as a mismatch."""
    grants: set[Grant] = set()
    for statement in deployment.allowed_statements(role):
        if statement.get("Condition") not in (None, VIA_S3):
            raise AssertionError(f"{role}: unexpected condition {statement['Condition']}")
        if statement.get("Condition") == VIA_S3:
            assert all(a.startswith("kms:") for a in _as_list(statement["Action"])), statement
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                grants.add((action, resource))
    return grants


def _expected(overrides: Mapping[str, str]) -> dict[str, set[Grant]]:
    bucket = f"arn:aws:s3:::{overrides['ExistingBucketName']}" if "ExistingBucketName" in overrides else None
    bucket = bucket or CREATED_BUCKET
    key = overrides.get("KmsKeyArn") or (None if "ExistingBucketName" in overrides else CREATED_KEY)
    read = {("s3:GetObject", f"{bucket}/models/*"), ("s3:ListBucket", bucket)}
    if key:
        read.add(("kms:Decrypt", key))
    if "ManifestSigningKmsKeyArn" in overrides:
        read.add(("kms:VerifyMac", HMAC_KEY))
    if "ManifestSigningSecretArn" in overrides:
        read.add(("secretsmanager:GetSecretValue", SIGNING_SECRET))
    encrypt = {("kms:GenerateDataKey", key)} if key else set()
    job_outputs = {
        f"{bucket}/jobs/*/output.jsonl",
        f"{bucket}/jobs/*/status.json",
        f"{bucket}/jobs/*/shards/*",
    }
    consume = (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    )
    return {
        "InferFunctionRole": read,
        # Text generation reads models like inference does, whole or streamed.
        "GenerateFunctionRole": read,
        "RegistryFunctionRole": read
        | encrypt
        | {("s3:PutObject", f"{bucket}/models/*/aliases/*"), ("s3:PutObject", f"{bucket}/models/*/meta/*")}
        | {("s3:DeleteObject", f"{bucket}/models/*/aliases/*")},
        "BatchFunctionRole": read
        | encrypt
        | {("s3:GetObject", f"{bucket}/jobs/*")}
        | {
            (action, resource)
            for action in ("s3:PutObject", "s3:AbortMultipartUpload")
            for resource in job_outputs
        }
        # The merge deletes stitched shard outputs, nothing else; sharded jobs start on JobStateMachine alone.
        | {("s3:DeleteObject", f"{bucket}/jobs/*/shards/*.jsonl")}
        | {("states:StartExecution", JOB_STATE_MACHINE)}
        | {(action, "<JobsQueue.Arn>") for action in consume},
        "AsyncFunctionRole": read
        | encrypt
        | {("s3:GetObject", f"{bucket}/results/*"), ("s3:PutObject", f"{bucket}/results/*")}
        | {(action, "<AsyncQueue.Arn>") for action in consume},
        # Every step is the batch function's alias; the Distributed Map's children are its own executions;
        # the Map's item reader reads each round's shard list.
        "JobStateMachineRole": {("lambda:InvokeFunction", BATCH_ALIAS)}
        | {("states:StartExecution", JOB_STATE_MACHINE)}
        | {
            (action, execution)
            for action in ("states:DescribeExecution", "states:StopExecution")
            for execution in JOB_EXECUTIONS
        }
        | {("s3:GetObject", f"{bucket}/jobs/*/shards/round-*.json")}
        | ({("kms:Decrypt", key)} if key else set()),
    }


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_each_role_grants_exactly_its_job(translated: dict[str, Any], configuration: str) -> None:
    overrides = CONFIGURATIONS[configuration]
    deployment = deploy(translated, overrides)
    roles = set(deployment.of_type("AWS::IAM::Role"))
    expected = _expected(overrides)
    assert roles == set(expected)
    for role, grants in expected.items():
        assert _grants(deployment, role) == grants, role


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_no_role_has_wildcard_actions_or_resources_on_data(
    translated: dict[str, Any], configuration: str
) -> None:
    deployment = deploy(translated, CONFIGURATIONS[configuration])
    for role in deployment.of_type("AWS::IAM::Role"):
        for statement in deployment.allowed_statements(role):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, (role, action)
                if action.startswith(DATA_ACTION_PREFIXES):
                    assert all(r not in ("*", "arn:aws:s3:::*") for r in _as_list(statement["Resource"])), (
                        role
                    )
        # Only logging and tracing come from AWS-managed policies; nothing that reaches data.
        assert deployment.aws_managed_policies(role) == MANAGED_POLICIES.get(role, BASIC_MANAGED), role


@pytest.mark.parametrize("role", ["InferFunctionRole", "GenerateFunctionRole"])
def test_the_serving_functions_write_nothing(translated: dict[str, Any], role: str) -> None:
    deployment = deploy(translated)
    actions = {action for action, _ in _grants(deployment, role)}
    assert actions == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}


def test_the_key_is_used_only_through_s3(translated: dict[str, Any]) -> None:
    deployment = deploy(translated)
    for role in deployment.of_type("AWS::IAM::Role"):
        for statement in deployment.allowed_statements(role):
            if any(a in ("kms:Decrypt", "kms:GenerateDataKey") for a in _as_list(statement["Action"])):
                assert statement["Condition"] == VIA_S3, role


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
