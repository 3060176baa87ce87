"""The deploy guide's publisher section names what template.yaml's PublisherPolicy grants (every action, for
every signing configuration) and the output that hands the policy out, so a publisher set up by hand from the
guide gets what `maas publish` and `maas models promote` call (tests/infra/test_publisher_policy.py proves
the policy against the code's calls)."""

from __future__ import annotations

import re
from typing import Any

from tests.infra.deployed import ACCOUNT, REGION, deploy, translate
from tests.support.paths import ROOT

PUBLISH_SECTION = re.compile(
    r"^## Publish a model to the deployed bucket\n(.*?)^## ", re.MULTILINE | re.DOTALL
)
SIGNING_CONFIGURATIONS: tuple[dict[str, str], ...] = (
    {},
    {"ManifestSigningKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mac-0000-1111"},
    {"ManifestSigningSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:maas/hmac-AbCdEf"},
)


def _publisher_actions() -> set[str]:
    translated = translate()
    return {
        action
        for overrides in SIGNING_CONFIGURATIONS
        for statement in deploy(translated, overrides).policy_statements("PublisherPolicy")
        for action in _as_list(statement["Action"])
    }


def test_the_documented_publisher_permissions_are_the_policys() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    section = PUBLISH_SECTION.search(guide)
    assert section is not None, "docs/deploy.md lost its publishing section"
    actions = _publisher_actions()
    # The multipart-under-SSE-KMS pair that the issue found missing must stay in the policy.
    assert {"s3:ListBucket", "s3:GetObject", "kms:Decrypt", "kms:GenerateDataKey"} <= actions

    missing = sorted(action for action in actions if f"`{action}`" not in section.group(1))

    assert missing == []
    assert "PublisherPolicyArn" in section.group(1)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
