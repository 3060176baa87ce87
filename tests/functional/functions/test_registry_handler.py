"""The registry function's lambda_handler, driven by real HTTP API v2 event JSON with an IAM caller."""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from maas.registry import Manifest, ModelRegistry
from tests.support.events import JSON, http_event, load_event
from tests.support.functions import start_function

if TYPE_CHECKING:
    from maas.training import TrainedModel

CALLER = "arn:aws:sts::123456789012:assumed-role/maas-deployer/alice"
MODEL = "seed-mlp"
BASE = f"/registry/models/{MODEL}"


@pytest.fixture
def versions(registry: ModelRegistry, seed_model: TrainedModel) -> list[Manifest]:
    """v1 and v2 are the trained seed model; v3 is a copy whose primary metric is worse."""
    from maas.training import publish_trained

    first = publish_trained(seed_model, registry)
    second = publish_trained(seed_model, registry)
    draft = seed_model.draft
    assert draft.primary_metric is not None
    good = draft.metrics[draft.primary_metric]
    bad = good * 10 + 1 if draft.primary_metric_goal == "minimize" else good / 10 - 1
    worse = draft.model_copy(update={"metrics": {**draft.metrics, draft.primary_metric: bad}})
    third = registry.publish(MODEL, seed_model.files, worse)
    return [first, second, third]


@pytest.fixture
def registry_function(monkeypatch: pytest.MonkeyPatch, s3: Any, versions: list[Manifest]) -> ModuleType:
    return start_function(monkeypatch, "registry")


def request(
    method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None, raw: str | None = None
) -> dict[str, Any]:
    """The registry API's event for `method path`, with a JSON `body` (or a `raw` one) and a query string."""
    target = f"{path}?{urlencode(query)}" if query else path
    text = raw if raw is not None else (None if body is None else json.dumps(body))
    caller = load_event("http_v2_registry_set_alias.json")["requestContext"]["authorizer"]
    return http_event(method, target, text, headers={"content-type": JSON}, authorizer=caller)


def invoke(function: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = function.lambda_handler(event, None)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def set_alias(function: ModuleType, alias: str, **body: Any) -> tuple[int, dict[str, Any]]:
    return invoke(function, request("PUT", f"{BASE}/aliases/{alias}", body))


# ---- reading


def test_list_models_shows_versions_alias_targets_and_the_latest_version(
    registry_function: ModuleType, versions: list[Manifest]
) -> None:
    newest = versions[-1]
    assert newest.primary_metric is not None
    assert invoke(registry_function, load_event("http_v2_registry_list_models.json")) == (
        200,
        {
            "models": [
                {
                    "name": MODEL,
                    "versions": [1, 2, 3],
                    "aliases": {},
                    "canaries": {},
                    "latest": {
                        "version": 3,
                        "created_at": newest.created_at,
                        "status": "ready",
                        "task": newest.task,
                        "primary_metric": newest.primary_metric,
                        "primary_metric_goal": newest.primary_metric_goal,
                        "primary_value": newest.metrics[newest.primary_metric],
                    },
                }
            ]
        },
    )
    assert set_alias(registry_function, "staging", version=2)[0] == 200
    status, body = invoke(registry_function, load_event("http_v2_registry_list_models.json"))
    assert status == 200 and body["models"][0]["aliases"] == {"staging": 2}
    assert body["models"][0]["canaries"] == {}
    assert set_alias(registry_function, "staging", version=2, canary={"version": 3, "weight": 0.25})[0] == 200
    status, body = invoke(registry_function, load_event("http_v2_registry_list_models.json"))
    assert status == 200 and body["models"][0]["aliases"] == {"staging": 2}
    assert body["models"][0]["canaries"] == {"staging": {"version": 3, "weight": 0.25}}


def test_describe_model_lists_versions_with_metrics_and_full_alias_documents(
    registry_function: ModuleType, versions: list[Manifest]
) -> None:
    set_alias(registry_function, "production", version=1, reason="first")
    set_alias(registry_function, "production", version=2, canary={"version": 3, "weight": 0.1})

    status, body = invoke(registry_function, request("GET", BASE))

    assert status == 200 and body["name"] == MODEL
    assert [v["version"] for v in body["versions"]] == [1, 2, 3]
    first = body["versions"][0]
    assert first["created_at"] == versions[0].created_at
    assert (first["status"], first["tags"], first["metrics"]) == ("ready", {}, versions[0].metrics)
    production = body["aliases"]["production"]
    assert production["version"] == 2
    assert production["canary"] == {"version": 3, "weight": 0.1}
    assert [(m["from_version"], m["to_version"]) for m in production["history"]] == [(None, 1), (1, 2)]
    assert production["history"][0]["reason"] == "first"


def test_describe_version_returns_manifest_and_meta(
    registry_function: ModuleType, versions: list[Manifest]
) -> None:
    status, body = invoke(registry_function, request("GET", f"{BASE}/versions/2"))
    assert status == 200
    assert body["manifest"] == json.loads(versions[1].model_dump_json())
    assert body["meta"]["status"] == "ready" and body["meta"]["tags"] == {}


# ---- aliases


def test_put_alias_from_the_event_file_records_the_iam_caller(
    registry_function: ModuleType, registry: ModelRegistry
) -> None:
    status, body = invoke(registry_function, load_event("http_v2_registry_set_alias.json"))

    assert status == 200, body
    assert body["version"] == 1 and body["updated_by"] == CALLER and body["reason"] == "first release"
    [move] = body["history"]
    assert move["by"] == CALLER and move["from_version"] is None and move["to_version"] == 1
    stored = registry.alias_document(MODEL, "production")
    assert stored is not None and stored.document.updated_by == CALLER


def test_by_in_the_body_is_refused_and_the_jwt_subject_is_used_without_iam(
    registry_function: ModuleType,
) -> None:
    status, body = set_alias(registry_function, "production", version=1, by="mallory")
    assert status == 400 and body["error"] == "by: unknown field"

    event = request("PUT", f"{BASE}/aliases/production", {"version": 1})
    event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "user-123"}, "scopes": None}}
    status, body = invoke(registry_function, event)
    assert status == 200 and body["updated_by"] == "user-123"


def test_compare_and_swap_conflict_is_409_naming_expected_and_got(registry_function: ModuleType) -> None:
    assert invoke(registry_function, load_event("http_v2_registry_set_alias.json"))[0] == 200

    status, body = set_alias(registry_function, "production", version=2, expected_version=0)
    assert status == 409
    assert body == {"error": "alias 'seed-mlp@production': expected it at version unset, got 1"}

    status, body = set_alias(registry_function, "production", version=2, expected_version=3)
    assert status == 409 and "expected it at version 3, got 1" in body["error"]

    status, body = set_alias(registry_function, "production", version=2, expected_version=1)
    assert status == 200 and body["version"] == 2


def test_canary_split_is_stored_and_validated(registry_function: ModuleType) -> None:
    status, body = set_alias(
        registry_function, "production", version=2, canary={"version": 3, "weight": 0.25}
    )
    assert status == 200 and body["canary"] == {"version": 3, "weight": 0.25}

    status, body = set_alias(registry_function, "production", version=2, canary={"version": 3, "weight": 1.5})
    assert status == 400 and "canary.weight" in body["error"] and "less than 1" in body["error"]
    status, body = set_alias(registry_function, "production", version=2, canary={"version": 2, "weight": 0.5})
    assert status == 400 and "canary.version" in body["error"]
    status, body = set_alias(registry_function, "production", version=2, canary={"version": 9, "weight": 0.5})
    assert status == 404 and "version 9: not found" in body["error"]


def test_rollback_restores_the_previous_target(registry_function: ModuleType) -> None:
    set_alias(registry_function, "production", version=1)
    set_alias(registry_function, "production", version=2)

    status, body = invoke(
        registry_function, request("POST", f"{BASE}/aliases/production/rollback", {"reason": "bad canary"})
    )

    assert status == 200 and body["version"] == 1 and body["reason"] == "bad canary"
    assert body["history"][-1] == {**body["history"][-1], "from_version": 2, "to_version": 1, "by": CALLER}

    # An empty body is fine; a fresh alias has nothing to roll back to.
    set_alias(registry_function, "fresh", version=1)
    status, body = invoke(registry_function, request("POST", f"{BASE}/aliases/fresh/rollback"))
    assert status == 404 and "expected an earlier target" in body["error"]


def test_delete_alias_honours_expected_version(
    registry_function: ModuleType, registry: ModelRegistry
) -> None:
    set_alias(registry_function, "staging", version=1)
    set_alias(registry_function, "staging", version=2)
    event = load_event("http_v2_registry_delete_alias.json")

    stale = copy.deepcopy(event)
    stale["queryStringParameters"] = {"expected_version": "1"}
    stale["rawQueryString"] = "expected_version=1"
    status, body = invoke(registry_function, stale)
    assert status == 409 and "expected it at version 1, got 2" in body["error"]

    assert invoke(registry_function, event) == (200, {"name": MODEL, "alias": "staging", "deleted": True})
    assert registry.alias_document(MODEL, "staging") is None
    status, body = invoke(registry_function, event)
    assert status == 404 and "alias 'staging' is not set" in body["error"]


# ---- promotion


def test_promote_moves_production_when_the_metric_does_not_regress(registry_function: ModuleType) -> None:
    set_alias(registry_function, "production", version=1)
    status, body = invoke(registry_function, load_event("http_v2_registry_promote.json"))
    assert status == 200, body
    assert body["version"] == 2 and body["updated_by"] == CALLER and body["reason"] == "better mse"


def test_promote_refuses_a_regression_unless_forced_with_a_reason(registry_function: ModuleType) -> None:
    set_alias(registry_function, "production", version=2)
    promote = f"{BASE}/promote"

    status, body = invoke(registry_function, request("POST", promote, {"version": 3}))
    assert status == 409 and "regresses" in body["error"]

    status, body = invoke(registry_function, request("POST", promote, {"version": 3, "force": True}))
    assert status == 400 and "expected a reason" in body["error"]

    forced = {"version": 3, "force": True, "reason": "accepting worse mse for latency"}
    status, body = invoke(registry_function, request("POST", promote, forced))
    assert status == 200 and body["version"] == 3

    status, body = invoke(registry_function, request("POST", promote, {"version": 9}))
    assert status == 404 and "version 9: not found" in body["error"]


# ---- versions


def test_tags_are_merged_and_removed(registry_function: ModuleType) -> None:
    tags = f"{BASE}/versions/1/tags"
    status, body = invoke(registry_function, request("PUT", tags, {"tags": {"team": "ml", "stage": "qa"}}))
    assert status == 200 and body["tags"] == {"team": "ml", "stage": "qa"} and body["updated_by"] == CALLER

    status, body = invoke(
        registry_function, request("PUT", tags, {"tags": {"ok": "yes"}, "remove": ["stage"]})
    )
    assert status == 200 and body["tags"] == {"team": "ml", "ok": "yes"}

    status, body = invoke(registry_function, request("GET", BASE))
    assert body["versions"][0]["tags"] == {"team": "ml", "ok": "yes"}

    status, body = invoke(registry_function, request("PUT", tags, {"tags": {"n": 1}}))
    assert status == 400 and "tags.n" in body["error"] and "got integer" in body["error"]


def test_archive_is_refused_while_aliased_then_allowed(registry_function: ModuleType) -> None:
    set_alias(registry_function, "production", version=1, canary={"version": 2, "weight": 0.5})

    status, body = invoke(registry_function, request("POST", f"{BASE}/versions/2/archive"))
    assert status == 409
    assert body == {"error": "archive 'seed-mlp' v2: expected no alias on it, got ['production']"}

    status, body = invoke(registry_function, request("POST", f"{BASE}/versions/3/archive"))
    assert status == 200 and body["status"] == "archived" and body["updated_by"] == CALLER
    status, body = invoke(registry_function, request("GET", f"{BASE}/versions/3"))
    assert body["meta"]["status"] == "archived"
    status, body = invoke(registry_function, request("POST", f"{BASE}/promote", {"version": 3, "alias": "x"}))
    assert status == 409 and "archived" in body["error"]


# ---- client mistakes


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "expected"),
    [
        ("PUT", f"{BASE}/aliases/production", "{not json", 400, "expected JSON, got invalid JSON"),
        ("PUT", f"{BASE}/aliases/production", "", 400, "expected JSON"),
        (
            "PUT",
            f"{BASE}/aliases/production",
            '{"version": 1, "colour": "red"}',
            400,
            "colour: unknown field",
        ),
        (
            "PUT",
            f"{BASE}/aliases/production",
            '{"version": "1"}',
            400,
            "version: input should be a valid integer",
        ),
        ("PUT", f"{BASE}/aliases/production", "{}", 400, "version: required field is missing"),
        ("PUT", f"{BASE}/aliases/production", "[1]", 400, "expected a JSON object, got array"),
        ("PUT", f"{BASE}/aliases/production", '{"version": 0}', 400, "version: input should be greater"),
        ("PUT", f"{BASE}/aliases/Prod!", '{"version": 1}', 400, "alias: expected 1-64 characters"),
        ("PUT", f"{BASE}/aliases/1st", '{"version": 1}', 400, "starting with a letter, got '1st'"),
        ("PUT", f"{BASE}/aliases/latest", '{"version": 1}', 400, "'latest' (reserved"),
        ("PUT", f"{BASE}/aliases/production", '{"version": 7}', 404, "version 7: not found"),
        ("POST", f"{BASE}/promote", '{"version": 1, "alias": "Bad Alias"}', 400, "alias: expected"),
        ("POST", f"{BASE}/promote", '{"version": 1, "force": "yes"}', 400, "force: input should be a valid"),
        ("GET", f"{BASE}/versions/two", None, 400, "got 'two'"),
        ("GET", f"{BASE}/versions/0", None, 400, "model version: expected an integer"),
        ("PUT", f"{BASE}/versions/x1/tags", "{}", 400, "model version: expected an integer"),
        ("POST", f"{BASE}/versions/9/archive", None, 404, "version 9: not found"),
        ("GET", f"{BASE}/versions/9", None, 404, "version 9"),
        ("GET", "/registry/models/no-such-model", None, 404, "model 'no-such-model': not found"),
        ("GET", "/registry/models/Not_Valid!", None, 400, "model name: expected 1-64 characters"),
        ("POST", "/registry/models/no-such-model/aliases/production/rollback", None, 404, "not set"),
        ("GET", "/registry/nothing/here", None, 404, "expected a registry route"),
        ("POST", BASE, None, 405, "method: expected GET"),
    ],
)
def test_client_mistakes_get_a_4xx_naming_expected_and_got(
    registry_function: ModuleType, method: str, path: str, raw: str | None, status: int, expected: str
) -> None:
    event = request(method, path, raw=raw)
    actual_status, body = invoke(registry_function, event)
    assert (actual_status, set(body)) == (status, {"error"}), body
    assert expected in body["error"], body["error"]


def test_bad_expected_version_query_is_400(registry_function: ModuleType) -> None:
    set_alias(registry_function, "staging", version=1)
    event = request("DELETE", f"{BASE}/aliases/staging", query={"expected_version": "one"})
    status, body = invoke(registry_function, event)
    assert status == 400 and "expected_version: expected a non-negative integer" in body["error"]


# ---- serving sees the move


def test_a_warm_infer_function_serves_the_new_alias_target(
    monkeypatch: pytest.MonkeyPatch, registry_function: ModuleType
) -> None:
    infer = start_function(monkeypatch, "infer", MAAS_ALIAS_TTL="0")
    infer_event = load_event("http_v2_infer.json")

    set_alias(registry_function, "production", version=1)
    first = infer.lambda_handler(copy.deepcopy(infer_event), None)
    assert first["statusCode"] == 200 and json.loads(first["body"])["model_version"] == "1"

    status, _ = set_alias(registry_function, "production", version=2, expected_version=1)
    assert status == 200
    second = infer.lambda_handler(copy.deepcopy(infer_event), None)
    assert second["statusCode"] == 200 and json.loads(second["body"])["model_version"] == "2"
