"""SnapStart in template.yaml (decision 0023): one parameter turns it on for the functions that load models,
every event source and integration invokes their live alias (SnapStart applies to published versions only),
and a combination Lambda would refuse (more than 512 MB of /tmp) is refused before anything is created.
Checked on what SAM and CloudFormation would deploy."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from maas.local.cloudformation import IntrinsicResolver
from tests.infra.deployed import Deployment, deploy, translate
from tests.support.paths import ROOT

SNAPSHOTTED = ("InferFunction", "AsyncFunction", "BatchFunction", "GenerateFunction")
LIVE_ALIAS = "Aliaslive"
SNAPSTART_ON = {"SnapStart": "PublishedVersions", "EphemeralStorageSize": "512"}


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


def _functions(deployment: Deployment) -> dict[str, dict[str, Any]]:
    return deployment.of_type("AWS::Lambda::Function")


def rule_violations(translated: dict[str, Any], overrides: dict[str, str]) -> list[str]:
    """The AssertDescription of each Rules assertion these parameter values break, as CloudFormation would
    report them before creating anything."""
    parameters = {name: str(spec.get("Default", "")) for name, spec in translated["Parameters"].items()}
    parameters.update(overrides)
    violations = []
    for name, rule in translated.get("Rules", {}).items():
        for index, assertion in enumerate(rule["Assertions"]):
            expressions = {"applies": rule.get("RuleCondition", {"Fn::Equals": ["", ""]})}
            expressions["holds"] = assertion["Assert"]
            resolver = IntrinsicResolver(parameters=parameters, conditions=expressions)
            if resolver.condition("applies") and not resolver.condition("holds"):
                violations.append(f"{name}[{index}]: {assertion['AssertDescription']}")
    return violations


def test_snapstart_is_off_by_default_and_on_for_published_versions_when_asked(
    translated: dict[str, Any],
) -> None:
    off = _functions(deploy(translated))
    on = _functions(deploy(translated, SNAPSTART_ON))
    for function in SNAPSHOTTED:
        assert off[function]["Properties"]["SnapStart"] == {"ApplyOn": "None"}, function
        assert on[function]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}, function
        assert on[function]["Properties"]["EphemeralStorage"] == {"Size": "512"}, function
    # The registry function never loads a model: it keeps $LATEST and no snapshot to pay for.
    assert "SnapStart" not in on["RegistryFunction"]["Properties"]


def test_more_than_512_mb_of_tmp_with_snapstart_is_refused_before_deploying(
    translated: dict[str, Any],
) -> None:
    assert rule_violations(translated, SNAPSTART_ON) == []
    assert rule_violations(translated, {}) == []  # off, the default 2048 MB is fine
    (violation,) = rule_violations(translated, {"SnapStart": "PublishedVersions"})
    assert "EphemeralStorageSize 512" in violation


@pytest.mark.parametrize("overrides", [{}, SNAPSTART_ON], ids=["off", "on"])
def test_every_event_source_invokes_the_live_alias(
    translated: dict[str, Any], overrides: dict[str, str]
) -> None:
    deployment = deploy(translated, overrides)
    aliases = deployment.of_type("AWS::Lambda::Alias")
    assert sorted(aliases) == sorted(f"{function}{LIVE_ALIAS}" for function in SNAPSHOTTED)
    for alias_id, alias in aliases.items():
        assert alias["Properties"]["Name"] == "live"
        function = alias_id.removesuffix(LIVE_ALIAS)
        version_id = alias["Properties"]["FunctionVersion"][1:-1].removesuffix(".Version")
        assert deployment.resources[version_id]["Properties"]["FunctionName"] == f"<{function}>"
    invoked = {f"<{alias_id}>" for alias_id in aliases}
    for mapping in deployment.of_type("AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["FunctionName"] in invoked
    for rule in deployment.of_type("AWS::Events::Rule").values():
        assert {target["Arn"] for target in rule["Properties"]["Targets"]} <= invoked
    for permission_id, permission in deployment.of_type("AWS::Lambda::Permission").items():
        if not permission_id.startswith("RegistryFunction"):
            assert permission["Properties"]["FunctionName"] in invoked, permission_id
    for api in (
        *deployment.of_type("AWS::ApiGatewayV2::Api").values(),
        *deployment.of_type("AWS::ApiGateway::RestApi").values(),
    ):
        for path, operations in api["Properties"]["Body"]["paths"].items():
            for method, operation in operations.items():
                uri = operation["x-amazon-apigateway-integration"]["uri"]
                if "RegistryFunction" not in uri:
                    assert any(target in uri for target in invoked), (method, path)


def test_a_change_to_the_layer_alone_publishes_a_new_version_of_each_aliased_function() -> None:
    source = (ROOT / "template.yaml").read_text(encoding="utf-8")
    changed = source.replace("ContentUri: shared/", "ContentUri: shared-changed/")
    assert changed != source

    def versions(text: str) -> set[str]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "template.yaml"
            path.write_text(text, encoding="utf-8")
            resources = translate(path)["Resources"]
        return {rid for rid, r in resources.items() if r["Type"] == "AWS::Lambda::Version"}

    before, after = versions(source), versions(changed)
    assert len(before) == len(SNAPSHOTTED)
    assert before.isdisjoint(after)
