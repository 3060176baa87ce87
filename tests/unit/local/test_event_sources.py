"""The local stack's reading of template.yaml's queues and SQS events, and Lambda's rules for a batch's
response, as pure functions: no server, no AWS."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from maas.local.cloudformation import IntrinsicResolver, TemplateError, UnresolvedIntrinsicError
from maas.local.queues import LocalQueue, failed_message_ids, sqs_event
from maas.local.sam import QueueNotification, RedrivePolicy
from maas.local.template_reader import load_template, parse_template
from tests.support.paths import ROOT

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Receives: {Type: Number, Default: 4}
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt MainQueue.Arn
            Filter: {S3Key: {Rules: [{Name: prefix, Value: in/}, {Name: suffix, Value: .csv}]}}
          - Event: s3:ObjectRemoved:*
            Queue: {"Fn::GetAtt": [MainQueue, Arn]}
  MainQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ignored-locally
      VisibilityTimeout: 90
      RedrivePolicy: {deadLetterTargetArn: !GetAtt DeadQueue.Arn, maxReceiveCount: !Ref Receives}
  DeadQueue:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy: {deadLetterTargetArn: !GetAtt LastQueue.Arn, maxReceiveCount: 2}
  LastQueue:
    Type: AWS::SQS::Queue
    Properties: {FifoQueue: true}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Handler: app.handler
      Events:
        Main:
          Type: SQS
          Properties:
            Queue: !GetAtt MainQueue.Arn
            BatchSize: 5
            MaximumBatchingWindowInSeconds: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
        Plain: {Type: SQS, Properties: {Queue: !GetAtt DeadQueue.Arn, Enabled: false}}
        Nightly: {Type: Schedule, Properties: {Schedule: "cron(0 3 * * ? *)"}}
        Http: {Type: HttpApi, Properties: {Path: /work, Method: POST}}
"""


def test_queues_are_created_dead_letter_queue_first_whatever_the_template_order() -> None:
    template = parse_template(TEMPLATE)

    ordered = template.queues_in_creation_order()

    assert [q.logical_id for q in ordered] == ["LastQueue", "DeadQueue", "MainQueue"]
    main = template.queues["MainQueue"]
    assert main.redrive_policy == RedrivePolicy("DeadQueue", {"Ref": "Receives"})
    assert main.attributes == {"VisibilityTimeout": 90}
    assert main.visibility_timeout == 90
    assert template.queues["DeadQueue"].visibility_timeout == 30  # SQS's default
    assert template.queues["LastQueue"].fifo
    assert not main.fifo


def test_sqs_events_are_parsed_with_lambdas_defaults_and_schedules_are_skipped() -> None:
    template = parse_template(TEMPLATE)

    main, plain = template.sqs_event_sources

    assert (main.function_id, main.event_id, main.queue_id) == ("Worker", "Main", "MainQueue")
    assert (main.batch_size, main.maximum_batching_window_seconds) == (5, 2)
    assert main.report_batch_item_failures
    assert (plain.queue_id, plain.batch_size, plain.maximum_batching_window_seconds) == ("DeadQueue", 10, 0)
    assert not plain.report_batch_item_failures
    assert plain.enabled is False
    assert [r.route_key for r in template.routes] == ["POST /work"]


def test_bucket_queue_configurations_are_parsed_per_entry() -> None:
    template = parse_template(TEMPLATE)

    assert template.queue_notifications == (
        QueueNotification(
            "Bucket", "s3:ObjectCreated:*", "MainQueue", (("prefix", "in/"), ("suffix", ".csv"))
        ),
        QueueNotification("Bucket", "s3:ObjectRemoved:*", "MainQueue", ()),
    )


def test_the_project_template_declares_the_event_topology_the_stack_runs() -> None:
    template = load_template(ROOT / "template.yaml")

    ordered = [q.logical_id for q in template.queues_in_creation_order()]
    for queue in template.queues.values():
        if queue.redrive_policy is not None:
            assert ordered.index(queue.redrive_policy.dead_letter_queue_id) < ordered.index(queue.logical_id)
    sources = {(s.function_id, s.queue_id): s for s in template.sqs_event_sources}
    assert set(sources) == {("BatchFunction", "JobsQueue"), ("AsyncFunction", "AsyncQueue")}
    assert all(s.report_batch_item_failures for s in sources.values())
    assert {n.queue_id for n in template.queue_notifications} == {"JobsQueue"}


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        pytest.param(
            "Queue: !GetAtt MainQueue.Arn\n            BatchSize",
            "Queue: arn:aws:sqs:us-east-1:1:elsewhere\n            BatchSize",
            "Worker.Main.Queue: expected !GetAtt <Queue>.Arn",
            id="an event on a queue outside the template",
        ),
        pytest.param(
            "Queue: !GetAtt MainQueue.Arn\n            BatchSize",
            "Queue: !GetAtt MainQueue.QueueName\n            BatchSize",
            "expected !GetAtt <Queue>.Arn",
            id="an event naming a queue attribute other than Arn",
        ),
        pytest.param(
            "deadLetterTargetArn: !GetAtt DeadQueue.Arn",
            "deadLetterTargetArn: !GetAtt Nowhere.Arn",
            "MainQueue.RedrivePolicy.deadLetterTargetArn",
            id="a dead-letter queue that is not declared",
        ),
        pytest.param(
            "deadLetterTargetArn: !GetAtt LastQueue.Arn",
            "deadLetterTargetArn: !GetAtt MainQueue.Arn",
            "redrive cycle",
            id="a redrive cycle",
        ),
        pytest.param(
            'Queue: {"Fn::GetAtt": [MainQueue, Arn]}',
            "Queue: !GetAtt Bucket.Arn",
            "QueueConfigurations[1].Queue",
            id="a notification to something other than a queue",
        ),
        pytest.param(
            "{Name: suffix, Value: .csv}",
            "{Name: suffix}",
            "QueueConfigurations[0].Filter.S3Key.Rules: expected Name and Value",
            id="a filter rule without a value",
        ),
    ],
)
def test_event_wiring_the_emulator_cannot_create_is_a_template_error(
    replace: str, by: str, message: str
) -> None:
    assert replace in TEMPLATE

    with pytest.raises(TemplateError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_template(TEMPLATE.replace(replace, by, 1))


# ---- intrinsics


def resolver_with_queues() -> IntrinsicResolver:
    return IntrinsicResolver.for_template(
        parse_template(TEMPLATE),
        resources={"MainQueue": "http://sqs.local/123456789012/maas-local-MainQueue"},
        attributes={
            "MainQueue": {
                "Arn": "arn:aws:sqs:us-east-1:123456789012:maas-local-MainQueue",
                "QueueName": "maas-local-MainQueue",
            }
        },
    )


@pytest.mark.parametrize(
    ("intrinsic", "expected"),
    [
        ({"Ref": "MainQueue"}, "http://sqs.local/123456789012/maas-local-MainQueue"),
        ({"Fn::GetAtt": ["MainQueue", "Arn"]}, "arn:aws:sqs:us-east-1:123456789012:maas-local-MainQueue"),
        ({"Fn::GetAtt": "MainQueue.QueueName"}, "maas-local-MainQueue"),
        ({"Fn::Sub": "${MainQueue.QueueName}/${Receives}"}, "maas-local-MainQueue/4"),
        (
            {"Fn::Join": ["|", [{"Ref": "MainQueue"}, {"Fn::GetAtt": ["MainQueue", "QueueName"]}]]},
            "http://sqs.local/123456789012/maas-local-MainQueue|maas-local-MainQueue",
        ),
    ],
)
def test_queue_refs_and_attributes_resolve_to_the_local_queue(intrinsic: Any, expected: str) -> None:
    assert resolver_with_queues().resolve(intrinsic) == expected


@pytest.mark.parametrize(
    "intrinsic",
    [
        {"Fn::GetAtt": ["MainQueue", "DeadLetterQueueArn"]},
        {"Fn::GetAtt": ["DeadQueue", "Arn"]},
        {"Fn::GetAtt": ["MainQueue"]},
        {"Fn::Sub": "${DeadQueue.Arn}"},
        {"Fn::ImportValue": "shared-queue"},
    ],
)
def test_intrinsics_without_a_local_value_still_raise(intrinsic: Any) -> None:
    with pytest.raises(UnresolvedIntrinsicError):
        resolver_with_queues().resolve(intrinsic)


# ---- Lambda's reading of a batch response

IDS = ("m1", "m2", "m3")


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        pytest.param(None, set(), id="null response: success"),
        pytest.param({}, set(), id="empty response: success"),
        pytest.param({"batchItemFailures": []}, set(), id="empty list: success"),
        pytest.param({"batchItemFailures": None}, set(), id="null list: success"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}, id="one failure"),
        pytest.param(
            {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]},
            {"m1", "m3"},
            id="two failures",
        ),
        pytest.param({"batchItemFailures": [{"itemIdentifier": ""}]}, set(IDS), id="empty id: all fail"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": None}]}, set(IDS), id="null id: all fail"),
        pytest.param({"batchItemFailures": [{"itemIdentifer": "m1"}]}, set(IDS), id="misspelt key: all fail"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "m9"}]}, set(IDS), id="unknown id: all fail"),
        pytest.param({"batchItemFailures": ["m1"]}, set(IDS), id="a bare id: all fail"),
        pytest.param({"batchItemFailures": "m1"}, set(IDS), id="not a list: all fail"),
        pytest.param("ok", set(IDS), id="not an object: all fail"),
        pytest.param({"batchItemFailures": [], "when": object()}, set(IDS), id="not JSON: all fail"),
    ],
)
def test_batch_item_failures_are_read_as_lambda_reads_them(result: Any, failed: set[str]) -> None:
    assert failed_message_ids(result, IDS, report_batch_item_failures=True) == failed


@pytest.mark.parametrize("result", [None, "anything", {"batchItemFailures": [{"itemIdentifier": "m1"}]}])
def test_without_report_batch_item_failures_any_return_is_a_success(result: Any) -> None:
    assert failed_message_ids(result, IDS, report_batch_item_failures=False) == frozenset()


def test_a_received_message_becomes_a_record_in_lambdas_shape() -> None:
    queue = LocalQueue(
        "Q", "maas-local-Q", "http://sqs.local/1/maas-local-Q", "arn:aws:sqs:eu-west-1:1:maas-local-Q"
    )
    received = {
        "MessageId": "id-1",
        "ReceiptHandle": "handle-1",
        "MD5OfBody": "md5-body",
        "Body": "{}",
        "Attributes": {
            "SenderId": "AIDEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000100",
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1700000000000",
            "MessageGroupId": "g",
        },
        "MD5OfMessageAttributes": "md5-attributes",
        "MessageAttributes": {
            "trace": {"StringValue": "abc", "DataType": "String"},
            "raw": {"BinaryValue": b"\xff", "DataType": "Binary.gz"},
        },
    }

    (record,) = sqs_event([received], queue)["Records"]

    assert record == {
        "messageId": "id-1",
        "receiptHandle": "handle-1",
        "body": "{}",
        "attributes": {
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000100",
            "MessageGroupId": "g",
        },
        "messageAttributes": {
            "trace": {
                "stringValue": "abc",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "raw": {
                "binaryValue": base64.b64encode(b"\xff").decode(),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary.gz",
            },
        },
        "md5OfMessageAttributes": "md5-attributes",
        "md5OfBody": "md5-body",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:1:maas-local-Q",
        "awsRegion": "eu-west-1",
    }
    assert list(record["attributes"])[:4] == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    ]
