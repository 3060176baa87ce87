"""The deploy guide's publisher permissions cover every call `maas publish` makes against the deployed
bucket: a large file is a multipart upload, which under SSE-KMS needs kms:Decrypt to complete, and a failed
publish aborts it. A publisher set up as documented must not fail after uploading every part."""

from __future__ import annotations

import re

from tests.support.paths import ROOT

PUBLISH_SECTION = re.compile(
    r"^## Publish a model to the deployed bucket\n(.*?)^## ", re.MULTILINE | re.DOTALL
)
# What ModelRegistry.publish calls: list versions, put (whole or in parts), abort a failed upload, read
# back, and S3's calls to KMS on the publisher's behalf for SSE-KMS (decision 0021).
PUBLISHER_ACTIONS = (
    "s3:ListBucket",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:GetObject",
    "kms:GenerateDataKey",
    "kms:Decrypt",
)


def test_the_documented_publisher_permissions_cover_a_multipart_publish_under_sse_kms() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    section = PUBLISH_SECTION.search(guide)
    assert section is not None, "docs/deploy.md lost its publishing section"

    missing = [action for action in PUBLISHER_ACTIONS if f"`{action}`" not in section.group(1)]

    assert missing == []
