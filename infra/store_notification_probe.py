"""The notification probe of the store survey: S3 sends an ObjectCreated record to SQS for each key that
matches a prefix and suffix filter (template.yaml's job rules), with S3's record shape, and none for the
rest. maas's batch jobs start only through these records."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_plus

from infra.store_probes import ProbeFailed, Target

# How long a notification may take to arrive: AWS delivers within seconds.
NOTIFICATION_WAIT_SECONDS = 8.0


@contextmanager
def notified_queue(target: Target, sqs: Any, prefix: str, suffix: str) -> Iterator[str]:
    """A queue receiving the bucket's ObjectCreated events filtered as template.yaml filters jobs."""
    queue_url = sqs.create_queue(QueueName=f"survey-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    try:
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        rules = [{"Name": "prefix", "Value": prefix}, {"Name": "suffix", "Value": suffix}]
        target.s3.put_bucket_notification_configuration(
            Bucket=target.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": rules}},
                    }
                ]
            },
        )
        yield queue_url
    finally:
        target.s3.put_bucket_notification_configuration(Bucket=target.bucket, NotificationConfiguration={})
        sqs.delete_queue(QueueUrl=queue_url)


def received_records(sqs: Any, queue_url: str, wanted: int) -> list[dict[str, Any]]:
    """S3 event records from the queue (test events skipped) until `wanted` arrived and a quiet second
    passed, or the wait ran out: a quiet second is how extra, unfiltered events show up."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + NOTIFICATION_WAIT_SECONDS
    while time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = answer.get("Messages", [])
        for message in messages:
            body = json.loads(message["Body"])
            records.extend(body.get("Records", []))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not messages and len(records) >= wanted:
            break
    return records


def record_problem(record: dict[str, Any], bucket: str, sizes: dict[str, int], region: str) -> str | None:
    s3_part = record.get("s3", {})
    key = unquote_plus(str(s3_part.get("object", {}).get("key", "")))
    checks = {
        "eventSource": (record.get("eventSource"), "aws:s3"),
        "eventName": (str(record.get("eventName", "")).split(":")[0], "ObjectCreated"),
        "awsRegion": (record.get("awsRegion"), region),
        "s3.bucket.name": (s3_part.get("bucket", {}).get("name"), bucket),
        "s3.object.size": (s3_part.get("object", {}).get("size"), sizes.get(key)),
    }
    for field, (got, expected) in checks.items():
        if got != expected:
            return f"record for {key!r}: {field} {got!r}, expected {expected!r}"
    if not s3_part.get("object", {}).get("eTag"):
        return f"record for {key!r}: no s3.object.eTag"
    return None


def probe_notification_to_sqs(target: Target) -> str:
    if target.sqs is None:
        raise ProbeFailed("no SQS endpoint: the candidate has no queue to notify")
    run = uuid.uuid4().hex[:8]
    matching = {f"jobs/seed mlp@2/{run}/input.jsonl": b'{"x": 1}\n', f"jobs/m/{run}/input.jsonl": b"{}\n"}
    ignored = {f"jobs/m/{run}/output.jsonl": b"{}\n", f"other/m/{run}/input.jsonl": b"{}\n"}
    with notified_queue(target, target.sqs, "jobs/", "/input.jsonl") as queue_url:
        for key, body in {**matching, **ignored}.items():
            target.s3.put_object(Bucket=target.bucket, Key=key, Body=body)
        records = received_records(target.sqs, queue_url, len(matching))
    keys = sorted(unquote_plus(str(r.get("s3", {}).get("object", {}).get("key", ""))) for r in records)
    if keys != sorted(matching):
        raise ProbeFailed(f"records for {keys}, expected exactly {sorted(matching)}")
    sizes = {key: len(body) for key, body in matching.items()}
    for record in records:
        problem = record_problem(record, target.bucket, sizes, target.region)
        if problem:
            raise ProbeFailed(problem)
    return "prefix+suffix filter honoured; record shape as S3's (key URL-encoded)"
