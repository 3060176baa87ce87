"""CloudFormation's YAML: a template's text as a document, its short tags (!Ref, !Sub ...) in long form.

The document keeps every intrinsic as written ({"Ref": ...}, {"Fn::GetAtt": [resource, attribute]});
evaluating them is maas.local.cloudformation's. Tests and infra scripts read templates through here
too, so they see what the local stack sees.
"""

from __future__ import annotations

from typing import Any

import yaml

from maas.local.cloudformation import TemplateError


class CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]  # yaml ships no stubs here
    """SafeLoader that reads CloudFormation short tags (!Ref, !Sub, !GetAtt ...) as their long form."""


def _construct_intrinsic(loader: CloudFormationLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def parse_cloudformation_yaml(text: str) -> dict[str, Any]:
    """The template's top-level mapping; TemplateError for text that is not YAML or not a mapping."""
    try:
        document = yaml.load(text, Loader=CloudFormationLoader)
    except yaml.YAMLError as exc:
        raise TemplateError(f"template: expected valid YAML, got {exc}") from None
    if not isinstance(document, dict):
        raise TemplateError("template: expected a YAML mapping at the top level")
    return document
