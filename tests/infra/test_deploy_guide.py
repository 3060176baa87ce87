"""docs/deploy.md names one stack, the Makefile's, and only parameters and outputs that template.yaml
declares: a guide whose `sam deploy` targets another stack, or reads an output that does not exist, leaves
the reader with an empty MAAS_BUCKET (issue 21)."""

from __future__ import annotations

import re

from infra.container_template import IMAGE_URI_PARAMETER

from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from tests.support.paths import ROOT

GUIDE = (ROOT / "docs" / "deploy.md").read_text()
TEMPLATE = parse_cloudformation_yaml((ROOT / "template.yaml").read_text())
STACK_NAMES = re.compile(r"(?:--stack-name|--stack|use-stack|\bSTACK=)\s*\"?([$A-Za-z0-9][$A-Za-z0-9-]*)")
OVERRIDES = re.compile(r"(?:--parameter-overrides|PARAMETERS=\"?|MAAS_LOCAL_PARAMETERS=\")(.*)")
CAMEL_CASE_ASSIGNMENT = re.compile(r"\b([A-Z][a-z][A-Za-z0-9]*)=")
TABLE_PARAMETER = re.compile(r"`([A-Z][A-Za-z0-9]+)`")
OUTPUT_KEY = re.compile(r"OutputKey=='([A-Za-z0-9]+)'")


def _makefile_stack() -> str:
    found = re.search(r"^STACK \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found is not None, "the Makefile lost its STACK default"
    return found.group(1)


def _parameters_table() -> str:
    found = re.search(r"^## Parameters\n(.*?)^## ", GUIDE, re.MULTILINE | re.DOTALL)
    assert found is not None, "docs/deploy.md lost its Parameters section"
    return found.group(1)


def test_every_stack_the_guide_names_is_the_makefiles_one() -> None:
    names = set(STACK_NAMES.findall(GUIDE))

    assert names <= {_makefile_stack(), "$STACK"}, names
    assert _makefile_stack() in names


def test_every_parameter_the_guide_passes_or_lists_is_declared_by_the_template() -> None:
    declared = set(TEMPLATE["Parameters"]) | {IMAGE_URI_PARAMETER}
    passed = {
        name
        for line in GUIDE.splitlines()
        for overrides in OVERRIDES.findall(line)
        for name in CAMEL_CASE_ASSIGNMENT.findall(overrides)
    }
    listed = {
        name
        for row in _parameters_table().splitlines()
        if row.startswith("| `")
        for name in TABLE_PARAMETER.findall(row.split("|")[1])
    }

    assert passed - declared == set()
    assert listed - declared == set()
    assert {"Stage", "Architecture", "ExistingBucketName", "KmsKeyArn"} <= passed
    # The table lists every parameter, the image template's ImageUri aside.
    assert set(TEMPLATE["Parameters"]) - listed == set()


def test_every_output_the_guide_reads_or_names_exists() -> None:
    outputs = set(TEMPLATE["Outputs"])
    read = set(OUTPUT_KEY.findall(GUIDE))
    named = set(re.findall(r"`([A-Z][A-Za-z]+(?:Name|Url|Arn))`", GUIDE))

    assert read and read <= outputs
    assert {"ApiUrl", "ModelBucketName", "PublisherPolicyArn"} <= named
    assert {n for n in named if n not in TEMPLATE["Parameters"]} - outputs == set()
