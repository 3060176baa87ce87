"""MAAS_MANIFEST_SIGNING reaches every registry built from Settings: the functions, the CLI, the registry app.

Given moto with a Secrets Manager HMAC key and MAAS_MANIFEST_SIGNING naming it, a version published by the
CLI's registry is signed, the infer function answers for it, and once its manifest is changed the infer
function refuses to load it (500) while the registry function refuses to show it.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from maas.apps.registry import build_registry_app
from maas.cli import common
from maas.config import Settings
from maas.registry.signing import SIGNATURE_FILE
from maas.service.inference import InferenceService
from tests.security.hostile_models import WEIGHTS, WIDTH, add_weights_files
from tests.support.aws import TEST_BUCKET
from tests.support.events import json_event
from tests.support.functions import load_function_module, set_function_env

NAME = "adder"
SECRET_NAME = "maas/manifest-signing"


@pytest.fixture
def signing_env(monkeypatch: pytest.MonkeyPatch, s3: Any) -> str:
    from maas.aws_clients import secrets_client

    secrets_client.cache_clear()
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=SECRET_NAME, SecretString="hmac-key-for-wiring"
    )
    spec = f"secret:{SECRET_NAME}"
    set_function_env(monkeypatch, MAAS_MANIFEST_SIGNING=spec)
    return spec


def infer_event(path: str) -> dict[str, Any]:
    return json_event(
        "POST",
        path,
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [1.0] * WIDTH}]},
    )


def test_every_registry_built_from_settings_signs_and_verifies(signing_env: str, s3: Any) -> None:
    settings = Settings.from_env()
    assert InferenceService.from_settings(settings).registry.signer is not None
    assert build_registry_app(settings=settings) is not None
    cli_registry = common.registry()
    assert cli_registry.signer is not None and cli_registry.signer.key == signing_env

    files, draft = add_weights_files()
    cli_registry.publish(NAME, files, draft)
    assert s3.get_object(Bucket=TEST_BUCKET, Key=f"models/{NAME}/versions/1/{SIGNATURE_FILE}")
    infer = load_function_module("infer")
    response = infer.lambda_handler(infer_event(f"/v2/models/{NAME}/infer"), None)
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["outputs"][0]["data"] == (1.0 + WEIGHTS).tolist()

    cli_registry.publish(NAME, files, draft)
    key = f"models/{NAME}/versions/2/manifest.json"
    document = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read())
    tampered = json.dumps({**document, "description": "trust me"}).encode()
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=tampered)
    response = infer.lambda_handler(infer_event(f"/v2/models/{NAME}/versions/2/infer"), None)
    assert response["statusCode"] == 500
    assert "signature does not match" in json.loads(response["body"])["error"]
    assert infer.app.service.cache.loaded_keys() == [(NAME, 1)]
