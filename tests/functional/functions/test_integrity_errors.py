"""An integrity failure, over HTTP, through the real infer and registry handlers.

Each row corrupts one stored document or artifact as someone with write access to the bucket (or a bug)
could, then asks for it. The answer is a 500 with a fixed message naming the model, the version and the
document that failed. It never repeats stored content, a parser's text or a link: the infer endpoints may
be called anonymously. The detail goes to the logs, where the operator needs it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from maas.aws_clients import secrets_client
from maas.config import Settings
from maas.registry import Manifest, ModelRegistry
from maas.registry.manifest import MANIFEST_FILE, MODEL_FILE
from maas.registry.signing import SIGNATURE_FILE, signer_from_settings
from tests.security.hostile_models import SIGNATURE, add_weights_files, add_weights_graph, plant_version
from tests.support import events as support_events
from tests.support.aws import TEST_BUCKET
from tests.support.events import JSON, load_event
from tests.support.functions import load_function_module, start_function
from tests.support.logs import JsonLogs
from tests.support.models import TOKENIZER_FILE, token_stats_model

if TYPE_CHECKING:
    from maas.training import TrainedModel

MODEL = "seed-mlp"
# Stored bytes that must never reach a caller. Every corruption below carries it.
MARKER = "stored-marker-7f3a"
SECRET_NAME = "maas/manifest-signing"


@dataclass(frozen=True)
class Corruption:
    """What is written to the bucket, what is asked for, and what the fixed message must name."""

    plant: Callable[[Any, ModelRegistry, TrainedModel], None]
    method: str
    path: str
    names: tuple[str, ...]
    # Whether the logged detail quotes the marker (a parse error does; a wire-format error gives offsets).
    detail_quotes_it: bool = True


def manifest_key(version: int, name: str = MODEL) -> str:
    return f"models/{name}/versions/{version}/{MANIFEST_FILE}"


def put(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=body)


def stored_manifest(s3: Any, version: int = 1) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        s3.get_object(Bucket=TEST_BUCKET, Key=manifest_key(version))["Body"].read()
    )
    return document


def _not_json(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    put(s3, manifest_key(1), b"not json " + MARKER.encode())


def _wrong_schema(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    put(s3, manifest_key(1), json.dumps({"name": MARKER, MARKER: 1}).encode())


def _another_version(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    document = stored_manifest(s3) | {"name": MARKER, "version": 7}
    put(s3, manifest_key(1), json.dumps(document).encode())


def _bad_alias(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    put(s3, f"models/{MODEL}/aliases/production.json", b'{"version": "' + MARKER.encode())


def _bad_meta(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    put(s3, f"models/{MODEL}/meta/1.json", json.dumps({"status": MARKER}).encode())
    # Without the latest pointer (a registry published before it), 'latest' is found by reading each
    # version's metadata document, which must then read.
    s3.delete_object(Bucket=TEST_BUCKET, Key=registry.latest_key(MODEL))


def _graph_not_onnx(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    # A pickle's opening bytes, with the manifest's checksums made to match: only the format check is left.
    plant_version(s3, TEST_BUCKET, MODEL, 2, {MODEL_FILE: b"\x80\x04" + MARKER.encode()}, seed.draft)


def _graph_reading_outside(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    files, draft = add_weights_files()
    files[MODEL_FILE] = add_weights_graph(f"/{MARKER}/weights.bin")
    plant_version(s3, TEST_BUCKET, "adder", 1, files, draft)


def _tokenizer_unreadable(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    files, draft = token_stats_model()
    files[TOKENIZER_FILE] = b'{"' + MARKER.encode()
    plant_version(s3, TEST_BUCKET, "texts", 1, files, draft)


def _signature_not_the_graphs(s3: Any, registry: ModelRegistry, seed: TrainedModel) -> None:
    files, draft = add_weights_files(location=None)
    renamed = SIGNATURE.model_copy(
        update={"inputs": [SIGNATURE.inputs[0].model_copy(update={"name": MARKER})]}
    )
    plant_version(s3, TEST_BUCKET, "adder", 1, files, draft.model_copy(update={"signature": renamed}))


V2 = f"/v2/models/{MODEL}"
INFER_CORRUPTIONS = {
    "manifest that is not JSON": Corruption(
        _not_json, "POST", f"{V2}/versions/1/infer", (f"model '{MODEL}' version 1", MANIFEST_FILE)
    ),
    "manifest that is not JSON, asked for its metadata": Corruption(
        _not_json, "GET", f"{V2}/versions/1", (f"model '{MODEL}' version 1", MANIFEST_FILE)
    ),
    "manifest that is not JSON, through the V1 protocol": Corruption(
        _not_json, "POST", f"/v1/models/{MODEL}:predict", (f"model '{MODEL}' version 1",)
    ),
    "manifest of another schema": Corruption(
        _wrong_schema, "POST", f"{V2}/versions/1/infer", (f"model '{MODEL}' version 1", MANIFEST_FILE)
    ),
    "manifest copied from another model's version": Corruption(
        _another_version, "POST", f"{V2}/versions/1/infer", (f"model '{MODEL}' version 1", MANIFEST_FILE)
    ),
    "alias document that is not JSON": Corruption(
        _bad_alias, "POST", f"{V2}/infer", (f"alias '{MODEL}@production'",)
    ),
    "metadata document 'latest' must read": Corruption(
        _bad_meta, "POST", f"{V2}/versions/latest/infer", (f"metadata of '{MODEL}' v1",)
    ),
    "graph file that is not ONNX": Corruption(
        _graph_not_onnx,
        "POST",
        f"{V2}/versions/2/infer",
        (f"{MODEL_FILE} of model '{MODEL}' v2",),
        detail_quotes_it=False,
    ),
    "tokenizer.json the tokenizers library cannot read": Corruption(
        _tokenizer_unreadable,
        "POST",
        "/v2/models/texts/versions/1/infer",
        (f"tokenizer file '{TOKENIZER_FILE}'",),
        detail_quotes_it=False,
    ),
    "manifest signature naming tensors the graph does not have": Corruption(
        _signature_not_the_graphs,
        "POST",
        "/v2/models/adder/versions/1/infer",
        ("model 'adder' v1", MANIFEST_FILE),
    ),
    "graph file reading data outside its version": Corruption(
        _graph_reading_outside,
        "POST",
        "/v2/models/adder/versions/1/infer",
        (f"{MODEL_FILE} of model 'adder' v1",),
    ),
}


def http_event(method: str, path: str, template: str = "http_v2_infer.json") -> dict[str, Any]:
    """The event for `method path` from the caller of a real event (its authorizer), with the real event's
    body when the method takes one (a valid V1 request on /v1/ paths)."""
    real = load_event(template)
    authorizer = real["requestContext"].get("authorizer")
    if method == "GET":
        return support_events.http_event(method, path, authorizer=authorizer)
    body = json.dumps({"instances": [[0.0] * 10]}) if path.startswith("/v1/") else real["body"]
    return support_events.http_event(
        method, path, body, headers={"content-type": JSON}, authorizer=authorizer
    )


def invoke(function: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = function.lambda_handler(event, None)
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body)


def assert_fixed_message(
    status: int, body: dict[str, Any], names: tuple[str, ...], logs: JsonLogs, *, detail_quotes_it: bool
) -> None:
    assert status == 500, body
    assert list(body) == ["error"]
    message = body["error"]
    for name in names:
        assert name in message
    text = json.dumps(body)
    assert MARKER not in text
    assert "input_value" not in text
    assert "pydantic" not in text.lower()
    assert "http" not in text.lower()
    # The operator gets the detail in the logs, beside the same message.
    logged = [line for line in logs.lines() if line.get("message") == "integrity check failed"]
    assert [line["error"] for line in logged] == [message]
    assert (MARKER in logged[0]["detail"]) == detail_quotes_it


@pytest.mark.parametrize("case", INFER_CORRUPTIONS, ids=str)
def test_the_infer_function_answers_a_fixed_message_and_logs_the_detail(
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    registry: ModelRegistry,
    s3: Any,
    seed_model: TrainedModel,
    published_seed: Manifest,
    json_logs: JsonLogs,
) -> None:
    corruption = INFER_CORRUPTIONS[case]
    corruption.plant(s3, registry, seed_model)
    function = start_function(monkeypatch, "infer")

    status, body = invoke(function, http_event(corruption.method, corruption.path))

    assert_fixed_message(
        status, body, corruption.names, json_logs, detail_quotes_it=corruption.detail_quotes_it
    )


REGISTRY = f"/registry/models/{MODEL}"
REGISTRY_CORRUPTIONS = {
    "describe a version whose manifest is not JSON": Corruption(
        _not_json, "GET", f"{REGISTRY}/versions/1", (f"model '{MODEL}' version 1", MANIFEST_FILE)
    ),
    "describe a model with a manifest copied from another version": Corruption(
        _another_version, "GET", REGISTRY, (f"model '{MODEL}' version 1", MANIFEST_FILE)
    ),
    "describe a version whose metadata is not valid": Corruption(
        _bad_meta, "GET", f"{REGISTRY}/versions/1", (f"metadata of '{MODEL}' v1",)
    ),
    "list models with an alias document that is not JSON": Corruption(
        _bad_alias, "GET", "/registry/models", (f"alias '{MODEL}@production'",)
    ),
    "move an alias whose document is not JSON": Corruption(
        _bad_alias, "PUT", f"{REGISTRY}/aliases/production", (f"alias '{MODEL}@production'",)
    ),
    "archive a version whose metadata is not valid": Corruption(
        _bad_meta, "POST", f"{REGISTRY}/versions/1/archive", (f"metadata of '{MODEL}' v1",)
    ),
}


@pytest.mark.parametrize("case", REGISTRY_CORRUPTIONS, ids=str)
def test_the_registry_function_answers_a_fixed_message_and_logs_the_detail(
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    registry: ModelRegistry,
    s3: Any,
    seed_model: TrainedModel,
    published_seed: Manifest,
    json_logs: JsonLogs,
) -> None:
    corruption = REGISTRY_CORRUPTIONS[case]
    corruption.plant(s3, registry, seed_model)
    monkeypatch.setenv("MAAS_BUCKET", TEST_BUCKET)
    function = load_function_module("registry")
    event = http_event(corruption.method, corruption.path, "http_v2_registry_set_alias.json")
    event["body"] = json.dumps({"version": 1}) if corruption.method == "PUT" else None

    status, body = invoke(function, event)

    assert_fixed_message(
        status, body, corruption.names, json_logs, detail_quotes_it=corruption.detail_quotes_it
    )


# ---- signed manifests: a signature file's content is stored content too


@pytest.fixture
def signing(s3: Any, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """MAAS_MANIFEST_SIGNING set to a Secrets Manager key, and a registry that signs with it."""
    secrets_client.cache_clear()
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=SECRET_NAME, SecretString="hmac-key-for-tests"
    )
    spec = f"secret:{SECRET_NAME}"
    monkeypatch.setenv("MAAS_MANIFEST_SIGNING", spec)
    settings = Settings(bucket=TEST_BUCKET, manifest_signing=spec)
    return ModelRegistry(s3, TEST_BUCKET, signer=signer_from_settings(settings))


SIGNATURES = {
    "a signature file that is not JSON": b"not json " + MARKER.encode(),
    "a signature naming another key": json.dumps(
        {"algorithm": "HMAC_SHA_256", "key": MARKER, "mac": base64.b64encode(bytes(32)).decode()}
    ).encode(),
}


@pytest.mark.parametrize("case", SIGNATURES, ids=str)
def test_a_bad_signature_answers_a_fixed_message_and_logs_the_detail(
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    signing: ModelRegistry,
    s3: Any,
    seed_model: TrainedModel,
    json_logs: JsonLogs,
) -> None:
    signing.publish(MODEL, seed_model.files, seed_model.draft)
    put(s3, f"models/{MODEL}/versions/1/{SIGNATURE_FILE}", SIGNATURES[case])
    function = start_function(monkeypatch, "infer")

    status, body = invoke(function, http_event("POST", f"{V2}/versions/1/infer"))

    assert_fixed_message(
        status, body, (f"model '{MODEL}' version 1", SIGNATURE_FILE), json_logs, detail_quotes_it=True
    )
    secrets_client.cache_clear()
