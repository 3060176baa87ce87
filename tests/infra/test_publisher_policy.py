"""template.yaml's PublisherPolicy allows every call that publishing, promoting and signing make, and nothing
they never make.

Given moto's S3, KMS and Secrets Manager, the real registry publishes (in one PUT, in parts, and a publish
that fails half way), promotes, lists and shows, and signs when signing is on; botocore's
provide-client-params event records each call. Each call becomes the IAM action AWS checks for it (and the
KMS calls S3 makes on the caller's behalf under SSE-KMS), on the deployed bucket's ARN, and must be allowed
by the policy as CloudFormation would deploy it. A new storage call in the code fails here until the policy
and its table below learn it.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.objects import MIB, MIN_PART_BYTES
from maas.registry import ModelRegistry
from maas.registry.admin import RegistryAdmin
from maas.registry.signing import KmsManifestSigner, ManifestSigner, SecretManifestSigner
from tests.infra.deployed import ACCOUNT, REGION, deploy, translate
from tests.support.aws import TEST_BUCKET
from tests.support.registry import DRAFT, graph

DEPLOYED_BUCKET = f"maas-dev-{ACCOUNT}-{REGION}"
CREATED_KEY = "<ModelKey.Arn>"
HMAC_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mac-0000-1111"
SIGNING_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:maas/manifest-hmac-AbCdEf"
VIA_S3 = {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
NAME = "published"

# The IAM action AWS authorizes each S3 operation by (the S3 User Guide's "actions for S3 operations").
S3_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
}
# What S3 asks KMS for on the caller's behalf when the bucket encrypts with SSE-KMS: a data key for each new
# object, and Decrypt to read one, or to add parts to and complete a multipart upload.
SSE_KMS_ACTIONS = {
    "PutObject": "kms:GenerateDataKey",
    "CreateMultipartUpload": "kms:GenerateDataKey",
    "UploadPart": "kms:Decrypt",
    "CompleteMultipartUpload": "kms:Decrypt",
    "GetObject": "kms:Decrypt",
}
DIRECT_ACTIONS = {
    ("kms", "GenerateMac"): "kms:GenerateMac",
    ("kms", "VerifyMac"): "kms:VerifyMac",
    ("secretsmanager", "GetSecretValue"): "secretsmanager:GetSecretValue",
}
SIGNING = {
    "unsigned": {},
    "signed with a KMS HMAC key": {"ManifestSigningKmsKeyArn": HMAC_KEY},
    "signed with a secret": {"ManifestSigningSecretArn": SIGNING_SECRET},
}


@dataclass(frozen=True, slots=True)
class Grant:
    """One permission a call needs; `via_s3`: KMS asked by S3 for the caller, so kms:ViaService holds."""

    action: str
    resource: str
    via_s3: bool = False


class CallRecorder:
    """Every call made through the clients it watches: (service, operation, parameters)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def watch(self, client: Any, service: str) -> Any:
        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.calls.append((service, model.name, dict(params)))

        client.meta.events.register(f"provide-client-params.{service}.*", record)
        return client


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


@pytest.fixture
def signing_resources(s3: Any) -> dict[str, str]:
    """moto's HMAC key ARN and secret name, for the signers and for mapping onto the deployed ARNs."""
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
    secret = "maas/manifest-hmac"
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=secret, SecretString="k3y-v4lue")
    return {"kms": key, "secret": secret}


def _signer(signing: str, resources: Mapping[str, str], recorder: CallRecorder) -> ManifestSigner | None:
    if "KMS" in signing:
        kms = recorder.watch(boto3.client("kms", region_name=REGION), "kms")
        return KmsManifestSigner(resources["kms"], lambda: kms)
    if "secret" in signing:
        secrets = recorder.watch(boto3.client("secretsmanager", region_name=REGION), "secretsmanager")
        return SecretManifestSigner(resources["secret"], lambda: secrets)
    return None


def _archived_by_someone_else_as_latest_moves() -> Callable[..., None]:
    """While the publisher moves `latest` to its new version, another admin archives that version: the
    publisher must then take the pointer off it (here, delete it: no other version is ready)."""
    admin = RegistryAdmin(ModelRegistry(boto3.client("s3", region_name=REGION), TEST_BUCKET))
    done: list[bool] = []

    def archive_first(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("/latest.json") and params["Key"].startswith("models/raced/") and not done:
            done.append(True)
            admin.archive("raced", 1)

    return archive_first


def _publish_promote_and_show(s3: Any, registry: ModelRegistry, folder: Path) -> None:
    """What a publisher does with the CLI: publish (whole and in parts), promote, list, show."""
    registry.publish(NAME, {"model.onnx": graph(b"one"), "card.md": b"# card"}, DRAFT)
    weights = folder / "model.onnx.data"
    weights.write_bytes(os.urandom(2 * MIN_PART_BYTES + MIB))
    registry.publish(NAME, {"model.onnx": graph(b"two"), "model.onnx.data": weights}, DRAFT)

    def network_breaks_at_part_2(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise ConnectionResetError("the network went away")

    s3.meta.events.register("provide-client-params.s3.UploadPart", network_breaks_at_part_2)
    with pytest.raises(ConnectionResetError):
        registry.publish(NAME, {"model.onnx": graph(b"three"), "model.onnx.data": weights}, DRAFT)
    s3.meta.events.unregister("provide-client-params.s3.UploadPart", network_breaks_at_part_2)

    s3.meta.events.register("provide-client-params.s3.PutObject", _archived_by_someone_else_as_latest_moves())
    registry.publish("raced", {"model.onnx": graph(b"raced")}, DRAFT)

    admin = RegistryAdmin(registry)
    admin.promote(NAME, 1)
    admin.promote(NAME, 2)
    assert registry.list_models() == [NAME, "raced"]
    registry.versions(NAME)
    registry.aliases(NAME)
    registry.manifest(NAME, 2)


def _grants(calls: list[tuple[str, str, dict[str, Any]]], names: Mapping[str, str]) -> set[Grant]:
    grants: set[Grant] = set()
    for service, operation, params in calls:
        if service == "s3":
            assert operation in S3_ACTIONS, f"S3 {operation}: add its IAM action to S3_ACTIONS and the policy"
            bucket = f"arn:aws:s3:::{DEPLOYED_BUCKET}"
            resource = bucket if operation == "ListObjectsV2" else f"{bucket}/{params['Key']}"
            grants.add(Grant(S3_ACTIONS[operation], resource))
            if operation in SSE_KMS_ACTIONS:
                grants.add(Grant(SSE_KMS_ACTIONS[operation], CREATED_KEY, via_s3=True))
        else:
            action = DIRECT_ACTIONS.get((service, operation))
            assert action is not None, f"{service} {operation}: add its IAM action to DIRECT_ACTIONS"
            recorded = params.get("KeyId") or params["SecretId"]
            grants.add(Grant(action, names[recorded]))
    return grants


def _allows(statement: Mapping[str, Any], grant: Grant) -> bool:
    condition = statement.get("Condition")
    if condition is not None and (condition != VIA_S3 or not grant.via_s3):
        return False
    return any(fnmatch.fnmatchcase(grant.action, a) for a in _as_list(statement["Action"])) and any(
        fnmatch.fnmatchcase(grant.resource, r) for r in _as_list(statement["Resource"])
    )


@pytest.fixture
def recorded(
    request: pytest.FixtureRequest, s3: Any, signing_resources: dict[str, str], tmp_path: Path
) -> Iterator[set[Grant]]:
    signing: str = request.param
    recorder = CallRecorder()
    signer = _signer(signing, signing_resources, recorder)
    registry = ModelRegistry(recorder.watch(s3, "s3"), TEST_BUCKET, signer=signer, part_bytes=MIN_PART_BYTES)
    _publish_promote_and_show(s3, registry, tmp_path)
    names = {signing_resources["kms"]: HMAC_KEY, signing_resources["secret"]: SIGNING_SECRET}
    yield _grants(recorder.calls, names)


@pytest.mark.parametrize("recorded", list(SIGNING), indirect=True)
def test_the_publisher_policy_allows_every_call_publish_promote_and_signing_make(
    translated: dict[str, Any], recorded: set[Grant], request: pytest.FixtureRequest
) -> None:
    signing = request.node.callspec.params["recorded"]
    statements = deploy(translated, SIGNING[signing]).policy_statements("PublisherPolicy")

    refused = sorted((g.action, g.resource) for g in recorded if not any(_allows(s, g) for s in statements))

    assert refused == []


@pytest.mark.parametrize("recorded", list(SIGNING), indirect=True)
def test_the_publisher_policy_allows_nothing_those_calls_never_need(
    translated: dict[str, Any], recorded: set[Grant], request: pytest.FixtureRequest
) -> None:
    signing = request.node.callspec.params["recorded"]
    statements = deploy(translated, SIGNING[signing]).policy_statements("PublisherPolicy")

    unused = [
        (action, resource)
        for statement in statements
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
        if not any(g.action == action and fnmatch.fnmatchcase(g.resource, resource) for g in recorded)
    ]

    assert unused == []


@pytest.mark.parametrize(
    ("overrides", "bucket", "key"),
    [
        ({"ExistingBucketName": "corp-models"}, "corp-models", None),
        (
            {"ExistingBucketName": "corp-models", "KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1"},
            "corp-models",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1",
        ),
    ],
)
def test_with_a_bucket_brought_the_publisher_policy_names_that_bucket_and_its_key(
    translated: dict[str, Any], overrides: dict[str, str], bucket: str, key: str | None
) -> None:
    statements = deploy(translated, overrides).policy_statements("PublisherPolicy")

    resources = {r for s in statements for r in _as_list(s["Resource"])}

    objects = f"arn:aws:s3:::{bucket}/models/*"
    expected = {f"arn:aws:s3:::{bucket}", objects, f"{objects}/latest.json"}
    assert resources == (expected | {key} if key else expected)


def test_no_function_role_is_given_the_publisher_policy(translated: dict[str, Any]) -> None:
    deployment = deploy(translated)

    attached = [
        role
        for role, resource in deployment.of_type("AWS::IAM::Role").items()
        if "<PublisherPolicy>" in resource["Properties"].get("ManagedPolicyArns", [])
    ]

    assert attached == []


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
