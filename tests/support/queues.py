"""Async requests as the async function meets them: an SQS record whose body is a V2 request, and the
result document the function writes to results/<id>.json."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support.aws import TEST_BUCKET
from tests.support.events import load_event


def record(body: Any, message_id: str) -> dict[str, Any]:
    """The recorded async request's SQS record with `body` (JSON-encoded unless already text)."""
    base: dict[str, Any] = copy.deepcopy(load_event("sqs_async_request.json")["Records"][0])
    base["messageId"] = message_id
    base["body"] = body if isinstance(body, str) else json.dumps(body)
    return base


def result(s3: Any, request_id: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=TEST_BUCKET, Key=f"results/{request_id}.json")["Body"].read()
    document: dict[str, Any] = json.loads(body)
    return document


def stored_versions(s3: Any, prefix: str) -> list[tuple[str, str]]:
    """Every version of every object under `prefix`, as (key, ETag): a second write of any key, even of the
    same bytes, adds a version, so equal lists before and after a redelivery mean it wrote nothing."""
    versions = s3.list_object_versions(Bucket=TEST_BUCKET, Prefix=prefix).get("Versions", [])
    return sorted((version["Key"], version["ETag"]) for version in versions)
