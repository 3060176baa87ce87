"""SQS events on the local stack: a throwaway template and a real recording handler, over moto's SQS.

The handler appends every event it gets to a JSON-lines file and answers by the message body:
`poison-*` is reported in batchItemFailures, `raise-*` raises, `malformed-*` reports an empty
itemIdentifier, `stranger-*` reports an id that is not in the batch; anything else succeeds. Queues
use a 1 s visibility timeout, so a retry takes about a second and the dead-letter queue a few.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from maas.local.stack import LocalStack
from tests.integration.waiting import eventually
from tests.support.aws import moto_server, use_endpoint
from tests.support.local_projects import write_project

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  RecordFile: {Type: String}
  MaxReceives: {Type: Number, Default: 3}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
    Environment:
      Variables:
        RECORD_FILE: !Ref RecordFile
Resources:
  ModelBucket:
    Type: AWS::S3::Bucket
    Properties:
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt UploadsQueue.Arn
            Filter:
              S3Key:
                Rules:
                  - {Name: prefix, Value: in/}
                  - {Name: suffix, Value: .txt}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 600
      MessageRetentionPeriod: 3600
      SqsManagedSseEnabled: true
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn
        maxReceiveCount: !Ref MaxReceives
  WorkDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 7200
  UploadsQueue:
    Type: AWS::SQS::Queue
  RecorderFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: recorder/
      Handler: app.handler
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
        Seen: {Type: HttpApi, Properties: {Path: /seen, Method: GET}}
        Tick: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
  UploadsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: recorder/
      Handler: app.handler
      Environment:
        Variables:
          QUEUE_ONLY_WORK_URL: !Ref WorkQueue
          QUEUE_ONLY_DLQ_ARN: !GetAtt WorkDeadLetterQueue.Arn
          QUEUE_ONLY_DLQ_NAME: !Sub "${WorkDeadLetterQueue.QueueName}"
      Events:
        Uploads:
          Type: SQS
          Properties:
            Queue: !GetAtt UploadsQueue.Arn
            BatchSize: 1
"""

RECORDER = """\
import json
import os
import threading

SEEN = []
_lock = threading.Lock()


def handler(event, context):
    if "Records" not in event:
        return {"statusCode": 200, "body": json.dumps({"seen": SEEN, "pid": os.getpid()})}
    with _lock, open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"function": context.function_name, "event": event}) + "\\n")
    failures = []
    for record in event["Records"]:
        body = record["body"]
        SEEN.append(body)
        if body.startswith("raise-"):
            raise RuntimeError("the handler failed on purpose")
        if body.startswith("poison-"):
            failures.append({"itemIdentifier": record["messageId"]})
        if body.startswith("malformed-"):
            failures.append({"itemIdentifier": ""})
        if body.startswith("stranger-"):
            failures.append({"itemIdentifier": "not-a-message-of-this-batch"})
    return {"batchItemFailures": failures}
"""


class Recording:
    """What the recorder handler saw, read back from its file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def invocations(self, function: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [line["event"] for line in lines if function is None or line["function"] == function]

    def records(self, function: str | None = None) -> list[dict[str, Any]]:
        return [record for event in self.invocations(function) for record in event["Records"]]

    def receive_counts(self, body: str) -> list[int]:
        return [
            int(record["attributes"]["ApproximateReceiveCount"])
            for record in self.records()
            if record["body"] == body
        ]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", {"template.yaml": TEMPLATE, "recorder/app.py": RECORDER})


@pytest.fixture
def recording(tmp_path: Path) -> Recording:
    return Recording(tmp_path / "record.jsonl")


@pytest.fixture
def stack(isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording) -> Iterator[LocalStack]:
    """A stack per test: moto's state is per process, so two stacks at once would share it."""
    with LocalStack(
        port=0,
        root=project,
        embedded=True,
        parameters={"RecordFile": str(recording.path)},
        queue_visibility_seconds=1,
    ) as running:
        yield running


@pytest.fixture
def sqs(stack: LocalStack) -> Any:
    return boto3.client("sqs", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")


@pytest.fixture
def s3(stack: LocalStack) -> Any:
    return boto3.client("s3", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def queue_attributes(sqs: Any, url: str) -> dict[str, str]:
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return attributes


def messages_left(sqs: Any, url: str) -> int:
    attributes = queue_attributes(sqs, url)
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def receive_from_dead_letter_queue(sqs: Any, url: str, body: str) -> dict[str, Any]:
    """The dead-letter copy of `body`, waiting for SQS to move it there."""

    def find() -> dict[str, Any] | None:
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )
        for message in response.get("Messages", []):
            if message["Body"] == body:
                found: dict[str, Any] = message
                return found
        return None

    found: dict[str, Any] = eventually(find, f"{body!r} in the dead-letter queue")
    return found


# ---- queues, as the template declares them


def test_queues_get_the_template_attributes_with_a_resolved_redrive_policy(
    stack: LocalStack, sqs: Any
) -> None:
    work = queue_attributes(sqs, stack.queue_url("WorkQueue"))
    dead_letter = queue_attributes(sqs, stack.queue_url("WorkDeadLetterQueue"))

    assert set(stack.queue_urls) == {"WorkQueue", "WorkDeadLetterQueue", "UploadsQueue"}
    assert work["QueueArn"].endswith(":maas-local-WorkQueue")
    assert work["VisibilityTimeout"] == "1"  # the local override, not the template's 600
    assert work["MessageRetentionPeriod"] == "3600"
    assert json.loads(work["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letter["QueueArn"],
        "maxReceiveCount": 3,
    }
    assert dead_letter["MessageRetentionPeriod"] == "7200"
    assert "RedrivePolicy" not in dead_letter


def test_an_unknown_queue_is_a_key_error_that_names_the_known_ones(stack: LocalStack) -> None:
    with pytest.raises(KeyError, match="WorkQueue"):
        stack.queue_url("NoSuchQueue")


def test_functions_without_routes_get_their_environment_with_queue_refs_and_attributes(
    stack: LocalStack, sqs: Any
) -> None:
    dead_letter_arn = queue_attributes(sqs, stack.queue_url("WorkDeadLetterQueue"))["QueueArn"]

    assert os.environ["QUEUE_ONLY_WORK_URL"] == stack.queue_url("WorkQueue")
    assert os.environ["QUEUE_ONLY_DLQ_ARN"] == dead_letter_arn
    assert os.environ["QUEUE_ONLY_DLQ_NAME"] == "maas-local-WorkDeadLetterQueue"


# ---- delivery


def test_a_message_reaches_the_function_as_lambdas_sqs_event_and_is_deleted(
    stack: LocalStack, sqs: Any, recording: Recording
) -> None:
    body = unique("hello")
    url = stack.queue_url("WorkQueue")
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "greeting"},
            "size": {"DataType": "Number", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )

    (record,) = eventually(lambda: [r for r in recording.records() if r["body"] == body], "the delivery")

    assert record["messageId"] == sent["MessageId"]
    assert record["receiptHandle"]
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_attributes(sqs, url)["QueueArn"]
    assert record["awsRegion"] == "us-east-1"
    assert list(record["attributes"]) == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    ]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert all(isinstance(value, str) for value in record["attributes"].values())
    assert record["messageAttributes"] == {
        "kind": {
            "stringValue": "greeting",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "size": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    eventually(lambda: messages_left(sqs, url) == 0, "the processed message to be deleted")


def test_reported_failures_stay_until_sqs_redrives_them_and_the_rest_are_deleted(
    stack: LocalStack, sqs: Any, recording: Recording
) -> None:
    url = stack.queue_url("WorkQueue")
    poison, good, also_good = unique("poison"), unique("good"), unique("good")
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate((good, poison, also_good))],
    )

    dead = receive_from_dead_letter_queue(sqs, stack.queue_url("WorkDeadLetterQueue"), poison)

    # Three receives by the function, then this test's own receive from the dead-letter queue.
    assert dead["Attributes"]["ApproximateReceiveCount"] == "4"
    assert recording.receive_counts(poison) == [1, 2, 3]
    assert recording.receive_counts(good) == [1]
    assert recording.receive_counts(also_good) == [1]
    assert messages_left(sqs, url) == 0


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param("raise", id="the handler raised"),
        pytest.param("malformed", id="an empty itemIdentifier"),
        pytest.param("stranger", id="an itemIdentifier not in the batch"),
    ],
)
def test_a_failed_batch_deletes_nothing_and_ends_in_the_dead_letter_queue(
    stack: LocalStack, sqs: Any, recording: Recording, behaviour: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = unique(behaviour)

    with caplog.at_level(logging.INFO, logger="maas.local.queues"):
        sqs.send_message(QueueUrl=stack.queue_url("WorkQueue"), MessageBody=body)
        dead = receive_from_dead_letter_queue(sqs, stack.queue_url("WorkDeadLetterQueue"), body)

    assert dead["Attributes"]["ApproximateReceiveCount"] == "4"
    assert recording.receive_counts(body) == [1, 2, 3]
    if behaviour == "raise":
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_one_execution_environment_serves_http_and_the_queue(
    stack: LocalStack, sqs: Any, recording: Recording, http: Any
) -> None:
    body = unique("shared")
    sqs.send_message(QueueUrl=stack.queue_url("WorkQueue"), MessageBody=body)
    eventually(lambda: recording.receive_counts(body), "the delivery")

    seen = http("GET", f"{stack.url}/seen")

    assert seen.status == 200, seen.body
    assert body in seen.json()["seen"]


# ---- S3 notifications


def test_uploads_matching_the_template_filter_are_delivered_as_s3_events(
    stack: LocalStack, s3: Any, recording: Recording
) -> None:
    bucket = stack.store.bucket
    folder = unique("batch")
    for ignored in (f"in/{folder}/a.csv", f"out/{folder}/b.txt", f"in/{folder}/c.txt.bak"):
        s3.put_object(Bucket=bucket, Key=ignored, Body=b"ignored")
    s3.put_object(Bucket=bucket, Key=f"in/{folder}/wanted.txt", Body=b"wanted")

    def deliveries() -> list[dict[str, Any]]:
        return [
            s3_record
            for record in recording.records("UploadsFunction")
            for s3_record in json.loads(record["body"]).get("Records", [])
            if folder in s3_record["s3"]["object"]["key"]
        ]

    # S3 queues a notification when its PUT completes, so the ignored keys, written first, would
    # have been delivered no later than the wanted one.
    (event,) = eventually(deliveries, "the upload's notification")
    assert unquote_plus(event["s3"]["object"]["key"]) == f"in/{folder}/wanted.txt"
    assert event["eventSource"] == "aws:s3"
    assert event["eventName"].startswith("ObjectCreated:")
    assert event["s3"]["bucket"]["name"] == bucket
    assert recording.records("UploadsFunction")[-1]["eventSourceARN"].endswith(":maas-local-UploadsQueue")


# ---- lifecycle and other stores


def test_closing_stops_every_poller_without_logging_errors(
    isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    stack = LocalStack(port=0, root=project, embedded=True, parameters={"RecordFile": str(recording.path)})
    with caplog.at_level(logging.INFO, logger="maas.local"):
        stack.start()
        pollers = [t for t in threading.enumerate() if t.name.startswith("maas-sqs-")]
        stack.close()

    assert sorted(t.name for t in pollers) == [
        "maas-sqs-RecorderFunction.Work",
        "maas-sqs-UploadsFunction.Uploads",
    ]
    assert not any(t.is_alive() for t in pollers)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_without_the_override_queues_keep_the_template_visibility(
    isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording
) -> None:
    parameters = {"RecordFile": str(recording.path), "MaxReceives": "5"}
    with LocalStack(port=0, root=project, embedded=True, parameters=parameters) as stack:
        sqs = boto3.client("sqs", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")
        work = queue_attributes(sqs, stack.queue_url("WorkQueue"))
        uploads = queue_attributes(sqs, stack.queue_url("UploadsQueue"))

    assert work["VisibilityTimeout"] == "600"
    assert json.loads(work["RedrivePolicy"])["maxReceiveCount"] == 5
    assert uploads["VisibilityTimeout"] == "30"  # SQS's default: the template sets none


@pytest.mark.parametrize("seconds", [-1, 12 * 60 * 60 + 1])
def test_a_visibility_override_outside_sqs_range_is_refused_up_front(project: Path, seconds: float) -> None:
    with pytest.raises(ValueError, match="queue visibility"):
        LocalStack(port=0, root=project, embedded=True, queue_visibility_seconds=seconds)


def test_an_endpoint_store_gets_no_queues_and_the_banner_says_so(
    isolated_env: pytest.MonkeyPatch, project: Path, recording: Recording
) -> None:
    with moto_server() as endpoint:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
        )
        use_endpoint(isolated_env, endpoint)
        parameters = {"RecordFile": str(recording.path)}

        with LocalStack(port=0, root=project, parameters=parameters) as stack:
            sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            assert stack.store.kind == "endpoint"
            assert stack.queue_urls == {}
            assert "QueueUrls" not in sqs.list_queues()
            assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(
                Bucket=stack.store.bucket
            )
            assert "events: not emulated against endpoint storage" in stack.banner()
            assert not [t for t in threading.enumerate() if t.name.startswith("maas-sqs-")]
