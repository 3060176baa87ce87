"""Manifest signing: with MAAS_MANIFEST_SIGNING set, only manifests signed with its key are believed.

Given moto's S3, KMS (an HMAC_256 key) and Secrets Manager (a secret holding an HMAC key), a registry built
from Settings publishes manifest.sig before manifest.json. Each row then reads a version back: a correctly
signed one loads and answers; a tampered, unsigned, re-pointed or foreign-signed one is an IntegrityError
and nothing loads. The secret's value appears in no message, repr or log line.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest

from maas.aws_clients import SecretsClient, kms_client, secrets_client
from maas.config import Settings
from maas.errors import ConfigurationError, IntegrityError, InvalidInput
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import ModelRef, ModelRegistry
from maas.registry.manifest import MANIFEST_FILE
from maas.registry.signing import (
    ALGORITHM,
    SIGNATURE_FILE,
    KmsManifestSigner,
    ManifestSigner,
    SecretManifestSigner,
    signer_from_settings,
)
from maas.service.inference import InferenceService
from tests.security.hostile_models import WEIGHTS, WIDTH, add_weights_files
from tests.security.rows import Rows
from tests.support.aws import TEST_BUCKET
from tests.support.logs import JsonLogs

NAME = "adder"
SECRET_NAME = "maas/manifest-signing"
SECRET_VALUE = "hmac-key-3f9c1d7be2a54c08"
OTHER_SECRET_NAME = "maas/someone-elses-key"
SIGNING_KINDS = ["secret", "kms"]


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    # Each test is a fresh container with its own moto account.
    kms_client.cache_clear()
    secrets_client.cache_clear()
    yield
    kms_client.cache_clear()
    secrets_client.cache_clear()


@pytest.fixture
def signing_keys(s3: Any) -> dict[str, str]:
    """MAAS_MANIFEST_SIGNING values for a KMS HMAC key and a Secrets Manager key, plus a second of each."""
    kms = boto3.client("kms", region_name="us-east-1")
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    keys = [
        kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"] for _ in range(2)
    ]
    kms.create_alias(AliasName="alias/maas-manifests", TargetKeyId=keys[0]["KeyId"])
    secrets.create_secret(Name=SECRET_NAME, SecretString=SECRET_VALUE)
    secrets.create_secret(Name=OTHER_SECRET_NAME, SecretBinary=b"\x00another key\xff")
    return {
        "kms": "kms:alias/maas-manifests",
        "kms-other": f"kms:{keys[1]['Arn']}",
        "secret": f"secret:{SECRET_NAME}",
        "secret-other": f"secret:{OTHER_SECRET_NAME}",
    }


def signed_registry(s3: Any, spec: str) -> ModelRegistry:
    """As a function builds it: the signer comes from Settings, and nothing is fetched until first use."""
    settings = Settings(bucket=TEST_BUCKET, manifest_signing=spec)
    return ModelRegistry(s3, TEST_BUCKET, signer=signer_from_settings(settings))


def service_for(registry: ModelRegistry) -> InferenceService:
    return InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))


def request() -> InferenceRequest:
    return InferenceRequest(inputs=[Tensor("x", "FP32", np.ones((1, WIDTH), dtype=np.float32))])


def read(s3: Any, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()
    return body


def manifest_key(version: int, name: str = NAME) -> str:
    return f"models/{name}/versions/{version}/{MANIFEST_FILE}"


def signature_key(version: int, name: str = NAME) -> str:
    return f"models/{name}/versions/{version}/{SIGNATURE_FILE}"


def model_of(kind: str) -> str:
    """Each kind of key signs a model of its own, so the kinds can share one bucket."""
    return f"{NAME}-{kind}"


def assert_refused_and_nothing_loaded(
    registry: ModelRegistry, match: str, name: str = NAME, version: int = 1
) -> IntegrityError:
    service = service_for(registry)
    with pytest.raises(IntegrityError, match=match) as refused:
        service.infer(ModelRef(name, version=version), request())
    assert service.cache.loaded_keys() == []
    assert SECRET_VALUE not in refused.value.message
    return refused.value


def test_a_signed_manifest_loads_and_answers(s3: Any, signing_keys: dict[str, str]) -> None:
    rows = Rows()
    for kind in SIGNING_KINDS:
        with rows.case(kind):
            name = model_of(kind)
            registry = signed_registry(s3, signing_keys[kind])
            files, draft = add_weights_files()

            registry.publish(name, files, draft)
            service = service_for(registry)
            response = service.infer(ModelRef(name), request())

            np.testing.assert_array_equal(response.outputs[0].array, 1.0 + WEIGHTS[None, :])
            assert service.cache.loaded_keys() == [(name, 1)]
            signature = json.loads(read(s3, signature_key(1, name)))
            assert signature["algorithm"] == ALGORITHM == "HMAC_SHA_256"
            assert signature["key"] == signing_keys[kind]
            assert len(base64.b64decode(signature["mac"], validate=True)) == 32
    rows.assert_all_passed()


def test_a_manifest_changed_after_signing_is_refused(s3: Any, signing_keys: dict[str, str]) -> None:
    rows = Rows()
    for kind in SIGNING_KINDS:
        with rows.case(kind):
            name = model_of(kind)
            registry = signed_registry(s3, signing_keys[kind])
            files, draft = add_weights_files()
            registry.publish(name, files, draft)
            # The attacker keeps every checksum and only makes the version look better.
            document = json.loads(read(s3, manifest_key(1, name)))
            document["metrics"] = {"accuracy": 0.999}
            s3.put_object(
                Bucket=TEST_BUCKET, Key=manifest_key(1, name), Body=json.dumps(document, indent=2).encode()
            )

            error = assert_refused_and_nothing_loaded(
                registry,
                f"model '{name}' version 1: manifest.sig: signature does not match: "
                "the manifest was changed after signing",
                name,
            )
            assert "it names key" not in error.message
    rows.assert_all_passed()


def test_the_signature_is_checked_before_the_manifest_is_parsed(
    s3: Any, signing_keys: dict[str, str]
) -> None:
    rows = Rows()
    for kind in SIGNING_KINDS:
        with rows.case(kind):
            name = model_of(kind)
            registry = signed_registry(s3, signing_keys[kind])
            files, draft = add_weights_files()
            registry.publish(name, files, draft)
            s3.put_object(Bucket=TEST_BUCKET, Key=manifest_key(1, name), Body=b"{not json")

            assert_refused_and_nothing_loaded(registry, "signature does not match", name)
    rows.assert_all_passed()


def test_an_unsigned_manifest_is_refused_when_signing_is_required(
    s3: Any, signing_keys: dict[str, str]
) -> None:
    rows = Rows()
    for kind in SIGNING_KINDS:
        with rows.case(kind):
            name = model_of(kind)
            files, draft = add_weights_files()
            ModelRegistry(s3, TEST_BUCKET).publish(name, files, draft)

            assert_refused_and_nothing_loaded(
                signed_registry(s3, signing_keys[kind]),
                f"model '{name}' version 1: manifest.json is not signed, "
                "and MAAS_MANIFEST_SIGNING requires it",
                name,
            )
    rows.assert_all_passed()


def test_a_signature_moved_from_another_version_does_not_match(s3: Any, signing_keys: dict[str, str]) -> None:
    rows = Rows()
    for kind in SIGNING_KINDS:
        with rows.case(kind):
            name, other = model_of(kind), f"other-{kind}"
            registry = signed_registry(s3, signing_keys[kind])
            files, draft = add_weights_files()
            registry.publish(name, files, draft)
            s3.delete_object(Bucket=TEST_BUCKET, Key=signature_key(1, name))
            ModelRegistry(s3, TEST_BUCKET, signer=registry.signer).publish(other, files, draft)
            moved = read(s3, signature_key(1, other))
            s3.put_object(Bucket=TEST_BUCKET, Key=signature_key(1, name), Body=moved)

            assert_refused_and_nothing_loaded(registry, "signature does not match", name)
    rows.assert_all_passed()


def test_a_manifest_signed_with_another_key_is_refused(s3: Any, signing_keys: dict[str, str]) -> None:
    rows = Rows()
    for kind in SIGNING_KINDS:
        with rows.case(kind):
            name = model_of(kind)
            files, draft = add_weights_files()
            signed_registry(s3, signing_keys[f"{kind}-other"]).publish(name, files, draft)

            error = assert_refused_and_nothing_loaded(
                signed_registry(s3, signing_keys[kind]), "signature does not match", name
            )
            # The key a stored signature names is stored content: the logs get it, callers do not.
            assert f"it names key '{signing_keys[f'{kind}-other']}'" in error.detail
            assert "names key" not in error.message
    rows.assert_all_passed()


def test_a_signature_file_that_is_not_one_is_refused(s3: Any, signing_keys: dict[str, str]) -> None:
    registry = signed_registry(s3, signing_keys["secret"])
    files, draft = add_weights_files()
    # Each garbage signature replaces the signature of a version of its own.
    rows = Rows()
    garbage_signatures = [b"", b"{}", b"not json", b'{"algorithm": "HMAC_SHA_256", "key": "k", "mac": "%%%"}']
    for version, garbage in enumerate(garbage_signatures, start=1):
        with rows.case(garbage):
            registry.publish(NAME, files, draft)
            s3.put_object(Bucket=TEST_BUCKET, Key=signature_key(version), Body=garbage)

            assert_refused_and_nothing_loaded(
                registry, f"{SIGNATURE_FILE}: expected JSON with algorithm HMAC_SHA_256", NAME, version
            )
    rows.assert_all_passed()


def test_an_artifact_may_not_pose_as_the_signature(s3: Any, signing_keys: dict[str, str]) -> None:
    files, draft = add_weights_files()
    with pytest.raises(InvalidInput, match=r"'manifest\.sig' is not a safe relative path"):
        signed_registry(s3, signing_keys["secret"]).publish(NAME, {**files, SIGNATURE_FILE: b"{}"}, draft)


# ---- the key: configuration, caching, and never a secret in the open -----------------------------


def test_the_secret_is_read_once_per_process_and_never_shown(
    s3: Any, signing_keys: dict[str, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    reads: list[str] = []

    def counted() -> SecretsClient:
        reads.append(SECRET_NAME)
        return secrets_client(None)

    signer: ManifestSigner = SecretManifestSigner(SECRET_NAME, counted)
    registry = ModelRegistry(s3, TEST_BUCKET, signer=signer)
    files, draft = add_weights_files()
    for _ in range(3):
        registry.publish(NAME, files, draft)
    for version in (1, 2, 3):
        registry.manifest(NAME, version)
    s3.put_object(Bucket=TEST_BUCKET, Key=manifest_key(3), Body=b"{}")
    with pytest.raises(IntegrityError) as refused:
        registry.manifest(NAME, 3)

    assert reads == [SECRET_NAME]
    shown = [repr(signer), repr(registry.signer), refused.value.message, json_logs.text, *capsys.readouterr()]
    assert not [text for text in shown if SECRET_VALUE in text]
    assert SECRET_VALUE.encode() not in b"".join(read(s3, signature_key(v)) for v in (1, 2, 3))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", type(None)),
        ("kms:alias/maas-manifests", KmsManifestSigner),
        ("secret:maas/manifest-signing", SecretManifestSigner),
    ],
)
def test_signing_settings_name_the_signer(spec: str, expected: type) -> None:
    signer = signer_from_settings(Settings(manifest_signing=spec))
    assert isinstance(signer, expected)
    if signer is not None:
        assert signer.key == spec


@pytest.mark.parametrize("spec", ["kms:", "secret:", "vault:maas", "alias/maas-manifests", "KMS:key"])
def test_a_malformed_signing_setting_is_a_configuration_error(spec: str) -> None:
    with pytest.raises(
        ConfigurationError, match=r"MAAS_MANIFEST_SIGNING: expected '', 'kms:<key id or ARN>'"
    ):
        signer_from_settings(Settings(manifest_signing=spec))


def test_settings_read_the_signing_key_from_the_environment() -> None:
    settings = Settings.from_env({"MAAS_MANIFEST_SIGNING": " kms:alias/maas-manifests "})
    signer = signer_from_settings(settings)
    assert signer is not None and signer.key == "kms:alias/maas-manifests"


def test_a_missing_key_is_a_configuration_error_naming_it(s3: Any, signing_keys: dict[str, str]) -> None:
    files, draft = add_weights_files()
    rows = Rows()
    for spec, code in [
        ("secret:maas/no-such-secret", "ResourceNotFoundException"),
        ("kms:alias/no-such-key", "NotFoundException"),
    ]:
        with rows.case(spec):
            registry = signed_registry(s3, spec)
            with pytest.raises(
                ConfigurationError, match=rf"MAAS_MANIFEST_SIGNING: .*'{spec.partition(':')[2]}'.*: {code}"
            ):
                registry.publish(NAME, files, draft)
            # Nothing was committed: the signature goes before the manifest.
            assert registry.versions(NAME) == []
    rows.assert_all_passed()


def test_a_kms_key_that_cannot_make_macs_is_a_configuration_error(s3: Any) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    files, draft = add_weights_files()
    with pytest.raises(ConfigurationError, match="InvalidKeyUsageException"):
        signed_registry(s3, f"kms:{key['KeyId']}").publish(NAME, files, draft)
