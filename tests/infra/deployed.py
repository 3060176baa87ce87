"""What CloudFormation would create from template.yaml for one set of parameter values, offline.

SAM's own translator expands the serverless resources; this module then does CloudFormation's part with
the local stack's own resolver: evaluates Conditions, drops resources whose condition is false, and
resolves Fn::If (with AWS::NoValue), Ref, Fn::Sub, Fn::GetAtt and Fn::Join into plain values. Resources
that only exist once deployed resolve to stable placeholders ("<ModelKey.Arn>"), so tests can assert on
exact ARNs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from maas.local.cloudformation import IntrinsicResolver
from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from tests.support.paths import ROOT

TEMPLATE = ROOT / "template.yaml"
PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"


def translate(template_path: Path = TEMPLATE) -> dict[str, Any]:
    """The CloudFormation SAM would deploy. Local code paths become S3 URIs, as `sam package` makes them,
    and managed policies come from an empty offline map, so no AWS call is made."""
    document = parse_cloudformation_yaml(template_path.read_text(encoding="utf-8"))
    packaged = copy.deepcopy(document)
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(uri), str):
                properties[uri] = f"s3://maas-artifacts/{properties[uri].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", REGION)
        translated: dict[str, Any] = Translator(None, Parser()).translate(
            packaged, parameter_values={}, get_managed_policy_map=dict
        )
    return translated


@dataclass(frozen=True)
class Deployment:
    """The resolved resources of one deployment, by logical id."""

    parameters: Mapping[str, Any]
    conditions: Mapping[str, bool]
    resources: Mapping[str, dict[str, Any]]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {rid: r for rid, r in self.resources.items() if r["Type"] == resource_type}

    def allowed_statements(self, role_id: str) -> list[dict[str, Any]]:
        """Every Allow statement a role grants: its inline policies and the stack's managed policies it
        attaches (AWS-managed ARNs are listed by `aws_managed_policies`)."""
        role = self.resources[role_id]["Properties"]
        documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])]
        for arn in role.get("ManagedPolicyArns", []):
            managed = self.resources.get(_placeholder_id(arn))
            if managed is not None and managed["Type"] == "AWS::IAM::ManagedPolicy":
                documents.append(managed["Properties"]["PolicyDocument"])
        statements = [s for document in documents for s in _as_list(document["Statement"])]
        return [s for s in statements if s["Effect"] == "Allow"]

    def policy_statements(self, policy_id: str) -> list[dict[str, Any]]:
        """The Allow statements of one of the stack's managed policies (e.g. PublisherPolicy, which no role
        attaches: the stack hands it to people through an output)."""
        document = self.resources[policy_id]["Properties"]["PolicyDocument"]
        return [s for s in _as_list(document["Statement"]) if s["Effect"] == "Allow"]

    def aws_managed_policies(self, role_id: str) -> list[str]:
        role = self.resources[role_id]["Properties"]
        return sorted(arn for arn in role.get("ManagedPolicyArns", []) if arn.startswith("arn:"))


def deploy(translated: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> Deployment:
    declared = translated.get("Parameters", {})
    unknown = set(overrides or {}) - set(declared)
    assert not unknown, f"no such parameters: {unknown}"
    parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
    parameters.update(overrides or {})
    resources = translated["Resources"]
    # The local stack's resolver, with a placeholder for whatever only a deployment knows.
    resolver = IntrinsicResolver(
        parameters=parameters,
        resources={rid: f"<{rid}>" for rid in resources},
        attributes=_PlaceholderAttributes(),
        region=REGION,
        account_id=ACCOUNT,
        partition=PARTITION,
        conditions=translated.get("Conditions", {}),
        list_parameters=frozenset(n for n, spec in declared.items() if spec["Type"] == "CommaDelimitedList"),
    )
    deployed = {
        rid: resolver.resolve_value(resource)
        for rid, resource in resources.items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    conditions = {name: resolver.condition(name) for name in translated.get("Conditions", {})}
    return Deployment(parameters, conditions, deployed)


class _PlaceholderAttributes(Mapping[str, Mapping[str, str]]):
    """Fn::GetAtt of any resource: "<Resource.Attribute>"."""

    def __getitem__(self, resource: str) -> Mapping[str, str]:
        return _Attributes(resource)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _Attributes(Mapping[str, str]):
    def __init__(self, resource: str) -> None:
        self.resource = resource

    def __getitem__(self, attribute: str) -> str:
        return f"<{self.resource}.{attribute}>"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _placeholder_id(value: Any) -> str:
    return value[1:-1] if isinstance(value, str) and value.startswith("<") and value.endswith(">") else ""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
