"""`maas models …` and `maas registry gc` against moto, with real published versions of the seed model."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from maas.cli import main
from maas.registry import Manifest, ModelRegistry
from tests.support.aws import TEST_BUCKET
from tests.support.cli import fail

if TYPE_CHECKING:
    from maas.training import TrainedModel

NAME = "demo"


@pytest.fixture
def demo(cli_registry: ModelRegistry, seed_model: TrainedModel) -> list[Manifest]:
    """v1: the seed model; v2: a better mse; v3: a worse mse, other params and another dataset."""
    from maas.training import publish_trained

    draft = seed_model.draft
    mse = draft.metrics["mse"]
    better = draft.model_copy(update={"metrics": {**draft.metrics, "mse": mse / 2}})
    worse = draft.model_copy(
        update={
            "metrics": {**draft.metrics, "mse": mse * 2},
            "params": {**draft.params, "lr": 0.5},
            "lineage": draft.lineage.model_copy(update={"dataset_hash": "0" * 64}),
        }
    )
    return [
        publish_trained(seed_model, cli_registry, NAME),
        cli_registry.publish(NAME, seed_model.files, better),
        cli_registry.publish(NAME, seed_model.files, worse),
    ]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run a command with --json; expect success and exactly one JSON document on stdout."""
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_ls_show_and_versions(
    demo: list[Manifest], cli_registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "models", "ls")["models"] == [{"name": NAME, "latest": 3, "versions": [1, 2, 3]}]
    assert run(capsys, "models", "list")["models"][0]["name"] == NAME
    run(capsys, "models", "promote", NAME, "1")
    run(capsys, "models", "tag", NAME, "1", "team=ml")

    shown = run(capsys, "models", "show", f"{NAME}@production")
    assert shown["manifest"] == demo[0].model_dump(mode="json")
    assert (shown["meta"]["status"], shown["meta"]["tags"]) == ("ready", {"team": "ml"})
    assert shown["aliases"] == [{"alias": "production", "role": "main", "weight": None}]

    listed = run(capsys, "models", "versions", NAME)
    assert [v["version"] for v in listed["versions"]] == [1, 2, 3]
    first = listed["versions"][0]
    assert first["created_at"] == demo[0].created_at
    assert (first["status"], first["tags"], first["primary_metric"]) == ("ready", {"team": "ml"}, "mse")
    assert first["metric_value"] == demo[0].metrics["mse"]
    assert [v["aliases"] for v in listed["versions"][1:]] == [[], []]

    assert main(["models", "versions", NAME]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["VERSION", "CREATED", "STATUS", "METRIC", "TAGS", "ALIASES"]
    assert table[1].split()[-2:] == ["team=ml", "production"]

    assert main(["models", "show", f"{NAME}/versions/2"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["version"] == 2  # stdout stays the bare manifest
    assert "status ready" in captured.err
    assert "not found" in fail(capsys, "models", "versions", "absent")


def test_promote_moves_production_and_refuses_a_regression(
    demo: list[Manifest], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "models", "promote", NAME, "1", "--by", "alice")["version"] == 1
    moved = run(capsys, "models", "promote", NAME, "2", "--by", "alice")
    assert (moved["alias"], moved["version"], moved["updated_by"]) == ("production", 2, "alice")
    assert moved["history"][-1]["from_version"] == 1

    refused = fail(capsys, "models", "promote", NAME, "3")
    assert "mse" in refused and "regresses" in refused and "force it with a reason" in refused
    assert "expected a reason" in fail(capsys, "models", "promote", NAME, "3", "--force")

    forced = run(capsys, "models", "promote", NAME, "3", "--force", "--reason", "hotfix")
    assert (forced["version"], forced["reason"]) == (3, "hotfix")

    rolled = run(capsys, "models", "rollback", NAME)
    assert rolled["version"] == 2
    assert rolled["history"][-1]["from_version"] == 3

    assert main(["models", "promote", NAME, "1", "--to", "staging", "--by", "bob"]) == 0
    assert capsys.readouterr().out.strip() == f"{NAME}@staging: v1 by bob"


def test_alias_compare_and_swap_and_canary(demo: list[Manifest], capsys: pytest.CaptureFixture[str]) -> None:
    created = run(capsys, "models", "alias", NAME, "staging", "1", "--expected-version", "0")
    assert (created["version"], created["canary"]) == (1, None)

    conflict = fail(capsys, "models", "alias", NAME, "staging", "2", "--expected-version", "0")
    assert "expected it at version unset, got 1" in conflict
    assert "got 1" in fail(capsys, "models", "alias", NAME, "staging", "2", "--expected-version", "3")

    split = run(
        capsys, "models", "alias", NAME, "staging", "2", "--expected-version", "1",
        "--canary", "3", "--weight", "0.1",
    )  # fmt: skip
    assert (split["version"], split["canary"]) == (2, {"version": 3, "weight": 0.1})

    listed = run(capsys, "models", "versions", NAME)["versions"]
    assert listed[1]["aliases"] == [{"alias": "staging", "role": "main", "weight": None}]
    assert listed[2]["aliases"] == [{"alias": "staging", "role": "canary", "weight": 0.1}]
    assert main(["models", "versions", NAME]) == 0
    assert "staging (canary 10%)" in capsys.readouterr().out

    assert "together" in fail(capsys, "models", "alias", NAME, "staging", "2", "--canary", "3")
    assert "0 < W < 1" in fail(
        capsys, "models", "alias", NAME, "staging", "2", "--canary", "3", "--weight", "1"
    )


def test_tags_are_added_and_removed(demo: list[Manifest], capsys: pytest.CaptureFixture[str]) -> None:
    tagged = run(capsys, "models", "tag", NAME, "1", "team=ml", "stage=exp", "--by", "alice")
    assert (tagged["tags"], tagged["updated_by"]) == ({"team": "ml", "stage": "exp"}, "alice")
    assert run(capsys, "models", "tag", NAME, "1", "--remove", "stage")["tags"] == {"team": "ml"}
    assert "KEY=VALUE" in fail(capsys, "models", "tag", NAME, "1", "oops")
    assert "not found" in fail(capsys, "models", "tag", NAME, "9", "a=b")


def test_archive_and_delete_are_refused_while_aliased(
    demo: list[Manifest], cli_registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "models", "promote", NAME, "1")
    assert "expected no alias on it, got ['production']" in fail(capsys, "models", "archive", NAME, "1")
    assert "expected no alias on it" in fail(capsys, "models", "delete", NAME, "1")

    run(capsys, "models", "promote", NAME, "2")
    assert run(capsys, "models", "archive", NAME, "1")["status"] == "archived"
    assert run(capsys, "models", "versions", NAME)["versions"][0]["status"] == "archived"
    assert "archived" in fail(capsys, "models", "promote", NAME, "1")

    assert run(capsys, "models", "delete", NAME, "1") == {"name": NAME, "version": 1, "deleted": True}
    assert cli_registry.versions(NAME) == [2, 3]
    # Only the claim stays, so the number 1 is never given again.
    assert [key for key, _ in cli_registry.version_folders(NAME)[1]] == [
        f"models/{NAME}/versions/1/claim.json"
    ]


def test_diff_shows_metric_param_and_data_differences(
    demo: list[Manifest], capsys: pytest.CaptureFixture[str]
) -> None:
    diff = run(capsys, "models", "diff", NAME, "1", "3")
    changed = {(d["section"], d["key"]): (d["a"], d["b"]) for d in diff["differences"]}
    assert changed[("metrics", "mse")] == (demo[0].metrics["mse"], demo[2].metrics["mse"])
    assert changed[("params", "lr")] == (demo[0].params["lr"], 0.5)
    assert changed[("data", "dataset_hash")] == (demo[0].lineage.dataset_hash, "0" * 64)
    assert not any(section == "signature" for section, _ in changed)

    assert main(["models", "diff", NAME, "1", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["SECTION", "KEY", "v1", "v3"]


def test_gc_lists_an_abandoned_folder_and_deletes_it_only_with_apply(
    demo: list[Manifest],
    cli_registry: ModelRegistry,
    s3: Any,
    seed_model: TrainedModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = "models/x/versions/9/model.onnx"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"half an upload")

    assert run(capsys, "registry", "gc")["abandoned"] == {}  # younger than the default 24 hours
    dry = run(capsys, "registry", "gc", "--older-than", "0")
    assert dry == {"older_than_hours": 0.0, "applied": False, "abandoned": {"x": [9]}}
    assert s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="models/x/")["KeyCount"] == 1
    assert main(["registry", "gc", "x", "--older-than", "0"]) == 0
    assert "would delete models/x/versions/9/ (all but claim.json)" in capsys.readouterr().out

    applied = run(capsys, "registry", "gc", "x", NAME, "--older-than", "0", "--apply")
    assert applied["abandoned"] == {"x": [9]}
    # The upload's files are gone; a claim stays (written now: this upload predates claims), so the next
    # publish of x is version 10.
    left = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="models/x/")["Contents"]
    assert [item["Key"] for item in left] == ["models/x/versions/9/claim.json"]
    assert cli_registry.versions(NAME) == [1, 2, 3]
    assert run(capsys, "registry", "gc", "--older-than", "0", "--apply")["abandoned"] == {}
    assert cli_registry.publish("x", seed_model.files, seed_model.draft).version == 10


def test_repair_latest_writes_the_pointer_a_registry_lacks(
    demo: list[Manifest], cli_registry: ModelRegistry, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # A registry copied without its pointer: bare names fall back to the listing until it is repaired.
    s3.delete_object(Bucket=TEST_BUCKET, Key=cli_registry.latest_key(NAME))

    assert run(capsys, "registry", "repair-latest") == {"latest": {NAME: 3}}
    pointer = s3.get_object(Bucket=TEST_BUCKET, Key=cli_registry.latest_key(NAME))["Body"].read()
    assert json.loads(pointer)["version"] == 3
    assert main(["registry", "repair-latest", NAME]) == 0
    assert capsys.readouterr().out == f"{NAME}: latest is v3\n"
