"""Redeploy over the bucket a deleted stack left behind, for `make deploy` and `make teardown`.

The stack's bucket has a fixed name (maas-<stage>-<account>-<region>) and `DeletionPolicy: Retain` with its
key, so models outlive the stack. Creating a stack of the same Stage again would then fail: the name is taken.
Instead, `make deploy` adopts it:

- `overrides`: before `sam deploy`, when the stack does not exist and the retained bucket does, prints
  `ExistingBucketName=<bucket> KmsKeyArn=<its key>` for `--parameter-overrides` (nothing otherwise);
- `reconnect`: after it, when the stack serves that retained bucket, points the bucket's job notifications
  (jobs/.../input.{jsonl,csv,npy}, the template's three rules) at the new stack's JobsQueue; the old ones
  named the deleted stack's queue. Other notifications on the bucket are kept;
- `retained`: before `sam delete`, prints what the deletion keeps and why.

The retained bucket keeps its encryption, versioning, lifecycle and policy (ModelBucketPolicy is retained
with it), so nothing else needs restoring.

    python infra/retained_bucket.py overrides --stack maas --stage dev --region us-east-1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

JOB_PREFIX = "jobs/"
JOB_INPUT_SUFFIXES = ("/input.jsonl", "/input.csv", "/input.npy")


class CloudFormationClient(Protocol):
    """The one CloudFormation call used (the project has no CloudFormation type stubs)."""

    def describe_stacks(self, *, StackName: str) -> Mapping[str, Any]: ...  # noqa: N803 (boto3's name)


def fixed_bucket_name(stage: str, account: str, region: str) -> str:
    """The name template.yaml gives the bucket it creates."""
    return f"maas-{stage}-{account}-{region}"


def stack_description(cloudformation: CloudFormationClient, stack: str) -> Mapping[str, Any] | None:
    """The stack, or None when there is none by that name (or only a deleted one)."""
    try:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    live = [s for s in found if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def adoption_overrides(
    cloudformation: CloudFormationClient, s3: S3Client, *, stack: str, bucket: str
) -> list[str]:
    """`ExistingBucketName=` and `KmsKeyArn=` for a new stack over the retained `bucket`; [] when the stack
    exists (sam deploy keeps its parameters) or the bucket does not."""
    if stack_description(cloudformation, stack) is not None or not _bucket_exists(s3, bucket):
        return []
    overrides = [f"ExistingBucketName={bucket}"]
    key = _bucket_kms_key(s3, bucket)
    if key is not None:
        overrides.append(f"KmsKeyArn={key}")
    return overrides


def reconnect_job_notifications(
    cloudformation: CloudFormationClient, s3: S3Client, *, stack: str, account: str, region: str
) -> str | None:
    """Point the retained bucket's job notifications at `stack`'s JobsQueue when the stack serves it as an
    existing bucket (adopted: its name is the fixed name of the stack's own Stage). Returns the bucket when
    something changed."""
    description = stack_description(cloudformation, stack)
    if description is None:
        return None
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in description.get("Parameters", [])}
    bucket = fixed_bucket_name(parameters.get("Stage", "dev"), account, region)
    if parameters.get("ExistingBucketName") != bucket:
        return None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    queue = outputs["JobsQueueArn"]
    current: dict[str, Any] = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    current.pop("ResponseMetadata", None)
    others = [c for c in current.get("QueueConfigurations", []) if not _is_job_rule(c)]
    wanted = others + [_job_rule(queue, suffix) for suffix in JOB_INPUT_SUFFIXES]
    if _normalised(current.get("QueueConfigurations", [])) == _normalised(wanted):
        return None
    current["QueueConfigurations"] = wanted
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)  # type: ignore[arg-type]
    return bucket


def retained_summary(cloudformation: CloudFormationClient, *, stack: str) -> str:
    """What deleting `stack` keeps, from its outputs, in one paragraph."""
    description = stack_description(cloudformation, stack)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (description or {}).get("Outputs", [])}
    bucket = outputs.get("ModelBucketName", "the model bucket")
    key = outputs.get("ModelKeyArn")
    kept = f"s3://{bucket} (your models, every version)" + (f" and its KMS key {key}" if key else "")
    return (
        f"deleting stack {stack} keeps {kept}, and the maas layer versions, on purpose (DeletionPolicy: "
        "Retain): deleting a stack must never delete the models it served. `make deploy` with the same "
        "STACK, STAGE and REGION adopts the bucket again; docs/deploy.md#tear-down-and-redeploy says how "
        "to remove them for good. The CLI still points at the bucket: `maas use-stack --local` forgets it."
    )


def _bucket_exists(s3: S3Client, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            return False
        raise
    return True


def _bucket_kms_key(s3: S3Client, bucket: str) -> str | None:
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as error:
        if "ServerSideEncryptionConfigurationNotFound" in str(error):
            return None
        raise
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm") == "aws:kms" and default.get("KMSMasterKeyID"):
            return default["KMSMasterKeyID"]
    return None


def _job_rule(queue_arn: str, suffix: str) -> dict[str, Any]:
    return {
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {
            "Key": {
                "FilterRules": [{"Name": "prefix", "Value": JOB_PREFIX}, {"Name": "suffix", "Value": suffix}]
            }
        },
    }


def _rule(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": value}


def _filter_rules(configuration: Mapping[str, Any]) -> dict[str, str]:
    rules = configuration.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return {rule["Name"].lower(): rule["Value"] for rule in rules}


def _is_job_rule(configuration: Mapping[str, Any]) -> bool:
    rules = _filter_rules(configuration)
    return rules.get("prefix") == JOB_PREFIX and rules.get("suffix") in JOB_INPUT_SUFFIXES


def _normalised(configurations: Sequence[Mapping[str, Any]]) -> list[tuple[str, tuple[str, ...], str]]:
    return sorted(
        (c["QueueArn"], tuple(sorted(c["Events"])), repr(sorted(_filter_rules(c).items())))
        for c in configurations
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["overrides", "reconnect", "retained"])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--stage", default="dev", help="overrides: the new stack's Stage (default: dev)")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    cloudformation = session.client("cloudformation")
    if args.action == "retained":
        print(retained_summary(cloudformation, stack=args.stack))
        return 0
    account = session.client("sts").get_caller_identity()["Account"]
    s3 = session.client("s3")
    if args.action == "overrides":
        bucket = fixed_bucket_name(args.stage, account, args.region)
        overrides = adoption_overrides(cloudformation, s3, stack=args.stack, bucket=bucket)
        if overrides:
            print(f"adopting the retained bucket {bucket} (a deleted stack kept it)", file=sys.stderr)
        print(" ".join(overrides))
        return 0
    reconnected = reconnect_job_notifications(
        cloudformation, s3, stack=args.stack, account=account, region=args.region
    )
    if reconnected is not None:
        print(f"s3://{reconnected}: job notifications go to stack {args.stack}'s JobsQueue", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
