"""The registry routes the web console reads: a version's report files, a diff, the promotion gate's verdict,
and the list's `latest` brief. Driven through the registry function's real handler with HTTP API v2 event
JSON, over one moto bucket for the module (the routes read; each test moves aliases of its own)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from maas import aws_clients
from maas.cli import main
from maas.registry import Manifest, ModelRegistry
from maas.registry.manifest import MODEL_FILE
from tests.support.aws import TEST_BUCKET, moto_bucket_for_module
from tests.support.events import JSON, http_event, load_event
from tests.support.functions import set_function_env, start_function

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from maas.training import TrainedModel

MODEL = "seed-mlp"
BASE = f"/registry/models/{MODEL}"
CALLER = load_event("http_v2_registry_set_alias.json")["requestContext"]["authorizer"]
IMMUTABLE = "private, max-age=31536000, immutable"


@dataclass(frozen=True)
class Registry:
    function: ModuleType
    s3: S3Client
    # v1, v2: the seed model; v3: a worse mse; v4: a failed parity check; v5: archived.
    versions: list[Manifest]


@pytest.fixture(scope="module")
def published(seed_model: TrainedModel) -> Iterator[Registry]:
    from maas.registry.admin import RegistryAdmin
    from maas.training import publish_trained

    with moto_bucket_for_module() as (env, s3):
        registry = ModelRegistry(s3, TEST_BUCKET)
        draft = seed_model.draft
        assert draft.primary_metric == "mse" and draft.primary_metric_goal == "minimize"
        assert draft.parity is not None
        worse = draft.model_copy(update={"metrics": {**draft.metrics, "mse": draft.metrics["mse"] * 10 + 1}})
        failed = draft.parity.model_copy(update={"max_abs_diff": 0.5, "passed": False})
        versions = [
            publish_trained(seed_model, registry),
            publish_trained(seed_model, registry),
            registry.publish(MODEL, seed_model.files, worse),
            registry.publish(MODEL, seed_model.files, draft.model_copy(update={"parity": failed})),
            publish_trained(seed_model, registry),
        ]
        RegistryAdmin(registry).archive(MODEL, 5)
        yield Registry(start_function(env, "registry"), s3, versions)
        aws_clients.s3_client.cache_clear()


def call(published: Registry, method: str, target: str, body: Any = None) -> dict[str, Any]:
    text = None if body is None else json.dumps(body)
    event = http_event(method, target, text, headers={"content-type": JSON}, authorizer=CALLER)
    response: dict[str, Any] = published.function.lambda_handler(event, None)
    return response


def answer(published: Registry, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    response = call(published, method, target, body)
    assert response["headers"]["Content-Type"] == "application/json", response
    return response["statusCode"], json.loads(response["body"])


# ---- report files


@pytest.mark.parametrize(
    ("file", "content_type"),
    [("card.md", "text/markdown; charset=utf-8"), ("loss.png", "image/png")],
)
def test_a_report_file_arrives_as_stored_binary_safe_and_cacheable_for_good(
    published: Registry, seed_model: TrainedModel, file: str, content_type: str
) -> None:
    assert file in published.versions[1].report_files

    get = call(published, "GET", f"{BASE}/versions/2/files/{file}")
    head = call(published, "HEAD", f"{BASE}/versions/2/files/{file}")

    assert get["statusCode"] == 200 and get["isBase64Encoded"] is True
    assert base64.b64decode(get["body"]) == seed_model.files[file]
    assert get["headers"]["Content-Type"] == content_type
    assert get["headers"]["Cache-Control"] == IMMUTABLE
    assert (head["statusCode"], head["headers"]) == (get["statusCode"], get["headers"])


@pytest.mark.parametrize(
    "file",
    [MODEL_FILE, "tokenizer.json", "nothing.png", "..%2Fmanifest.json", "%2E%2E", "card.md%00"],
)
def test_any_other_file_is_a_404_naming_it_and_the_report_files_there_are(
    published: Registry, file: str
) -> None:
    status, body = answer(published, "GET", f"{BASE}/versions/1/files/{file}")

    assert status == 404
    reports = ", ".join(published.versions[0].report_files)
    assert body["error"].startswith(
        f"file: expected one of the report files of '{MODEL}' v1 ({reports}), got "
    )


def test_a_report_file_that_is_not_what_the_manifest_says_is_an_integrity_failure(
    published: Registry,
) -> None:
    # v4 only: no other test reads its files.
    key = f"models/{MODEL}/versions/4/card.md"
    published.s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"# not the card that was published\n")

    status, body = answer(published, "GET", f"{BASE}/versions/4/files/card.md")

    assert status == 500 and "card.md" in body["error"], body


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        (f"{BASE}/versions/9/files/card.md", 404, "version 9"),
        (f"{BASE}/versions/one/files/card.md", 400, "model version: expected an integer"),
        ("/registry/models/Not_Valid!/versions/1/files/card.md", 400, "model name: expected"),
    ],
)
def test_a_report_file_of_a_bad_or_missing_version_is_a_4xx(
    published: Registry, path: str, status: int, expected: str
) -> None:
    actual, body = answer(published, "GET", path)
    assert actual == status and expected in body["error"], body


# ---- diff


def test_the_diff_is_what_maas_models_diff_prints(
    published: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, body = answer(published, "GET", f"{BASE}/diff?a=1&b=3")
    head = call(published, "HEAD", f"{BASE}/diff?a=1&b=3")

    # The CLI over the same bucket, as a user's shell points it there.
    set_function_env(monkeypatch)
    try:
        assert main(["models", "diff", MODEL, "1", "3", "--json"]) == 0
    finally:
        aws_clients.s3_client.cache_clear()
    assert status == 200 and body == json.loads(capsys.readouterr().out)
    assert ("metrics", "mse") in {(d["section"], d["key"]) for d in body["differences"]}
    assert head["statusCode"] == 200


@pytest.mark.parametrize(
    ("query", "status", "expected"),
    [
        ("b=3", 400, "a: expected a version number (an integer from 1, at most 18 digits), got none"),
        ("a=1", 400, "b: expected a version number"),
        (
            "a=1&b=three",
            400,
            "b: expected a version number (an integer from 1, at most 18 digits), got 'three'",
        ),
        ("a=0&b=1", 400, "a: expected a version number"),
        ("a=1&b=9", 404, f"model '{MODEL}' version 9: not found"),
    ],
)
def test_a_diff_without_two_versions_is_a_4xx_naming_the_parameter(
    published: Registry, query: str, status: int, expected: str
) -> None:
    actual, body = answer(published, "GET", f"{BASE}/diff?{query}")
    assert actual == status and expected in body["error"], body


# ---- the promotion gate


def gate(published: Registry, version: int, alias: str | None = None) -> dict[str, Any]:
    query = f"version={version}" + (f"&alias={alias}" if alias else "")
    status, body = answer(published, "GET", f"{BASE}/gate?{query}")
    assert status == 200 and isinstance(body, dict), body
    return body


def set_alias(published: Registry, alias: str, version: int) -> None:
    status, body = answer(published, "PUT", f"{BASE}/aliases/{alias}", {"version": version})
    assert status == 200, body


def test_the_gate_reports_a_regression_with_both_values(published: Registry) -> None:
    set_alias(published, "gate-regression", 2)
    mse = [manifest.metrics["mse"] for manifest in published.versions]

    assert gate(published, 3, "gate-regression") == {
        "name": MODEL,
        "version": 3,
        "alias": "gate-regression",
        "current_version": 2,
        "verdict": "needs_force",
        "message": (
            f"promote '{MODEL}' v3 to 'gate-regression': mse (minimize) regresses from {mse[1]:.6g} (v2) "
            f"to {mse[2]:.6g} (v3); force it with a reason to override"
        ),
        "metric": "mse",
        "goal": "minimize",
        "current_value": mse[1],
        "candidate_value": mse[2],
    }
    # Judging moved nothing.
    _, body = answer(published, "GET", BASE)
    assert body["aliases"]["gate-regression"]["version"] == 2


def test_the_gate_allows_a_first_promotion_and_defaults_to_production(published: Registry) -> None:
    verdict = gate(published, 3)
    assert (verdict["alias"], verdict["current_version"], verdict["verdict"]) == (
        "production",
        None,
        "allowed",
    )
    assert (verdict["message"], verdict["current_value"]) == (None, None)
    assert verdict["candidate_value"] == published.versions[2].metrics["mse"]
    assert call(published, "HEAD", f"{BASE}/gate?version=3")["statusCode"] == 200


@pytest.mark.parametrize(
    ("query", "status", "expected"),
    [
        ("", 400, "version: expected a version number (an integer from 1, at most 18 digits), got none"),
        ("version=v2", 400, "version: expected a version number"),
        ("version=2&alias=latest", 400, "alias: expected a settable alias, got 'latest'"),
        ("version=2&alias=Bad%20Alias", 400, "alias: expected 1-64 characters"),
        ("version=9", 404, f"model '{MODEL}' version 9: not found"),
    ],
)
def test_a_gate_query_that_is_missing_or_bad_is_a_4xx_naming_the_parameter(
    published: Registry, query: str, status: int, expected: str
) -> None:
    actual, body = answer(published, "GET", f"{BASE}/gate?{query}")
    assert actual == status and expected in body["error"], body


@pytest.mark.parametrize(
    ("alias", "current", "candidate", "verdict"),
    [
        ("agree-first", None, 3, "allowed"),
        ("agree-better", 3, 2, "allowed"),
        ("agree-same", 3, 3, "allowed"),
        ("agree-worse", 2, 3, "needs_force"),
        ("agree-parity", 2, 4, "refused"),
        ("agree-archived", None, 5, "refused"),
    ],
)
def test_promote_does_what_the_gate_said(
    published: Registry, alias: str, current: int | None, candidate: int, verdict: str
) -> None:
    if current is not None:
        set_alias(published, alias, current)
    judged = gate(published, candidate, alias)
    assert judged["verdict"] == verdict
    promote = f"{BASE}/promote"
    plain = {"version": candidate, "alias": alias}

    status, body = answer(published, "POST", promote, plain)

    if verdict == "allowed":
        assert status == 200 and body["version"] == candidate
        return
    assert (status, body) == (409, {"error": judged["message"]})
    forced = {**plain, "force": True, "reason": "console test"}
    status, body = answer(published, "POST", promote, forced)
    if verdict == "needs_force":
        assert status == 200 and body["version"] == candidate
    else:
        assert (status, body) == (409, {"error": judged["message"]})


@pytest.mark.parametrize("force", [False, True], ids=["plain", "forced"])
def test_a_promotion_judged_against_another_version_of_the_alias_is_a_conflict(
    published: Registry, force: bool
) -> None:
    """The gate said v2 -> v3 needs force; meanwhile someone moved the alias to v1. Promoting with the judged
    version is refused, however forced, and the alias stays where the other caller put it."""
    alias = f"judged-{'forced' if force else 'plain'}"
    set_alias(published, alias, 2)
    judged = gate(published, 3, alias)
    assert judged["current_version"] == 2
    set_alias(published, alias, 1)
    request = {"version": 3, "alias": alias, "expected_version": judged["current_version"]}
    if force:
        request |= {"force": True, "reason": "judged against v2"}

    status, body = answer(published, "POST", f"{BASE}/promote", request)

    assert (status, body) == (
        409,
        {"error": f"alias 'seed-mlp@{alias}': expected it at version 2, got 1; check the gate again"},
    )
    assert answer(published, "GET", BASE)[1]["aliases"][alias]["version"] == 1
    unset = {"version": 3, "alias": f"{alias}-new", "expected_version": 0}
    assert answer(published, "POST", f"{BASE}/promote", unset)[0] == 200
    assert answer(published, "POST", f"{BASE}/promote", {**unset, "version": 2})[1] == {
        "error": f"alias 'seed-mlp@{alias}-new': expected it at version unset, got 3; check the gate again"
    }


# ---- the lists carry what the console shows


def test_the_models_list_names_the_newest_version_not_archived(published: Registry) -> None:
    status, body = answer(published, "GET", "/registry/models")

    [model] = body["models"]
    fourth = published.versions[3]
    assert status == 200 and model["versions"] == [1, 2, 3, 4, 5]
    assert model["latest"] == {
        "version": 4,
        "created_at": fourth.created_at,
        "status": "ready",
        "task": "regression",
        "primary_metric": "mse",
        "primary_metric_goal": "minimize",
        "primary_value": fourth.metrics["mse"],
    }


def test_the_version_summaries_carry_task_and_primary_metric(published: Registry) -> None:
    status, body = answer(published, "GET", BASE)

    assert status == 200
    assert [
        (v["version"], v["status"], v["task"], v["primary_metric"], v["primary_metric_goal"])
        for v in body["versions"]
    ] == [(n, "archived" if n == 5 else "ready", "regression", "mse", "minimize") for n in range(1, 6)]
