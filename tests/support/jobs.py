"""Batch jobs as the batch function meets them: the SQS message carrying S3's notification of an input
object, the Lambda context's clock, and readers for the output lines and status.json the job writes."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

from maas.service.job_layout import JobStatus
from tests.support.aws import TEST_BUCKET
from tests.support.events import load_event


class Context:
    """The one method of Lambda's context the batch function reads."""

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def job_event(
    key: str,
    *,
    bucket: str = TEST_BUCKET,
    size: int | None = None,
    message_id: str = "059f36b4-87a3-44ab-83d2-661975830a7d",
) -> dict[str, Any]:
    """The recorded SQS event, its S3 notification pointing at `key` (URL-encoded, as S3 sends it) in
    `bucket`; `size` makes the notification's object size true too, where a reader of the event may see it."""
    event = copy.deepcopy(load_event("sqs_s3_job_notification.json"))
    record = event["Records"][0]
    notification = json.loads(record["body"])
    s3_part = notification["Records"][0]["s3"]
    s3_part["bucket"]["name"] = bucket
    s3_part["object"]["key"] = quote_plus(key, safe="/")
    if size is not None:
        s3_part["object"]["size"] = size
    record["body"] = json.dumps(notification)
    record["messageId"] = message_id
    return event


def submit(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=body)


def read_lines(s3: Any, key: str) -> list[dict[str, Any]]:
    text = s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in text.splitlines()]


def read_status(s3: Any, folder: str) -> JobStatus:
    body = s3.get_object(Bucket=TEST_BUCKET, Key=f"{folder}status.json")["Body"].read()
    return JobStatus.model_validate_json(body)
