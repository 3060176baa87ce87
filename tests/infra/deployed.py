"""What CloudFormation would create from template.yaml for one set of parameter values, offline.

SAM's own translator expands the serverless resources; this module then does CloudFormation's part:
evaluates Conditions, drops resources whose condition is false, and resolves Fn::If (with AWS::NoValue),
Ref, Fn::Sub, Fn::GetAtt and Fn::Join into plain values. Resources that only exist once deployed resolve to
stable placeholders ("<ModelKey.Arn>"), so tests can assert on exact ARNs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from maas.local.template import parse_cloudformation_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "maas-test",
}
_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


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

    def aws_managed_policies(self, role_id: str) -> list[str]:
        role = self.resources[role_id]["Properties"]
        return sorted(arn for arn in role.get("ManagedPolicyArns", []) if arn.startswith("arn:"))


def deploy(translated: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> Deployment:
    parameters: dict[str, Any] = {}
    for name, spec in translated.get("Parameters", {}).items():
        raw = (overrides or {}).get(name, spec.get("Default", ""))
        if spec["Type"] == "CommaDelimitedList":
            parameters[name] = [part for part in str(raw).split(",")] if raw != "" else [""]
        else:
            parameters[name] = str(raw)
    unknown = set(overrides or {}) - set(parameters)
    assert not unknown, f"no such parameters: {unknown}"
    resolver = _Resolver(parameters, dict(translated.get("Conditions", {})))
    resources = {
        rid: resolver.resolve(resource)
        for rid, resource in translated["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    conditions = {name: resolver.condition(name) for name in translated.get("Conditions", {})}
    return Deployment(parameters, conditions, resources)


class _Resolver:
    def __init__(self, parameters: Mapping[str, Any], conditions: Mapping[str, Any]) -> None:
        self.parameters = parameters
        self.conditions = conditions
        self._evaluated: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._evaluated:
            self._evaluated[name] = self._truth(self.conditions[name])
        return self._evaluated[name]

    def _truth(self, expression: Any) -> bool:
        (function, argument), *_ = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self._scalar(side) for side in argument)
            return left == right
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(item) for item in argument)
        raise AssertionError(f"unsupported condition function {function}")

    def _scalar(self, value: Any) -> str:
        resolved = self.resolve(value)
        return ",".join(resolved) if isinstance(resolved, list) else str(resolved)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, argument), *_ = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::GetAtt":
                resource, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return f"<{resource}.{attribute}>"
            if function == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        return f"<{name}>"

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {key: self.resolve(item) for key, item in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name:
                return f"<{name}>"
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(substitute, text)


def _placeholder_id(value: Any) -> str:
    return value[1:-1] if isinstance(value, str) and value.startswith("<") and value.endswith(">") else ""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
