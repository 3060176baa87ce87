"""template.yaml's queues on the embedded SQS, and Lambda's SQS event source mappings as pollers.

What AWS does, and so what happens here:

- Every AWS::SQS::Queue is created with its attributes; a RedrivePolicy names its dead-letter queue,
  so dead-letter queues are created first. A bucket's QueueConfigurations become its notification
  configuration, and the store itself then sends S3 event notifications to the queue.
- Each SQS event of a function gets one poller thread: it long-polls the queue, gathers up to
  BatchSize messages within MaximumBatchingWindowInSeconds, invokes the function with the event
  Lambda builds, and deletes what the function processed. A handler that raised deletes nothing;
  with ReportBatchItemFailures only the reported messages stay. Messages that stay come back when
  their visibility timeout ends, and SQS itself moves a message to the dead-letter queue once it was
  received maxReceiveCount times. Nothing here changes a message's visibility or counts its
  retries, so what a test sees is the redrive AWS does.
- One poller per event source and one execution environment per function, so a function sees one
  batch at a time, as with a reserved concurrency of 1.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from maas.local.cloudformation import IntrinsicResolver
from maas.local.sam import DEFAULT_SQS_BATCH_SIZE, QueueNotification, QueueSpec, SqsEventSource

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

    from maas.local.lambdas import LocalFunction

logger = logging.getLogger(__name__)

LOCAL_QUEUE_PREFIX = "maas-local-"
FIFO_SUFFIX = ".fifo"
# Short enough that stop() is prompt, long enough that an idle poller costs nothing.
POLL_WAIT_SECONDS = 1
# SQS's own limits: messages per ReceiveMessage or DeleteMessageBatch call, and the visibility range.
MAX_MESSAGES_PER_CALL = 10
MAX_VISIBILITY_TIMEOUT_SECONDS = 12 * 60 * 60
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
# How long stop() waits for an invocation in progress: its Timeout, but a 15-minute batch job does not
# get to hold up Ctrl-C that long; the grace covers the long poll and the deletes after it.
STOP_WAIT_MAX_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0

# SQS attributes the local queue takes from the template; encryption and policies have no local meaning.
QUEUE_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
)
# The system attributes Lambda copies into a record's `attributes`, in the order it writes them.
RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


@dataclass(frozen=True, slots=True)
class LocalQueue:
    """A template queue as created locally: what Ref (url) and Fn::GetAtt (arn, name) return."""

    logical_id: str
    name: str
    url: str
    arn: str

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def attributes(self) -> dict[str, str]:
        """The queue's Fn::GetAtt attributes."""
        return {"Arn": self.arn, "QueueName": self.name, "QueueUrl": self.url}


def local_queue_name(queue: QueueSpec) -> str:
    return f"{LOCAL_QUEUE_PREFIX}{queue.logical_id}{FIFO_SUFFIX if queue.fifo else ''}"


def local_sqs_client(endpoint_url: str | None, region: str) -> SQSClient:
    """An SQS client for the pollers: its read timeout outlasts a long poll, and a refused call is
    retried by the poller's own loop, so botocore retries little."""
    config = Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=POLL_WAIT_SECONDS + 30,
    )
    return boto3.session.Session().client("sqs", endpoint_url=endpoint_url, region_name=region, config=config)


def create_queues(
    sqs: SQSClient,
    queues: Iterable[QueueSpec],
    resolver: IntrinsicResolver,
    *,
    visibility_timeout_seconds: float | None = None,
) -> dict[str, LocalQueue]:
    """Create `queues` (dead-letter queues first, see SamTemplate.queues_in_creation_order) and return
    them by logical id. `visibility_timeout_seconds` replaces every queue's VisibilityTimeout."""
    created: dict[str, LocalQueue] = {}
    for queue in queues:
        attributes: dict[QueueAttributeNameType, str] = {
            name: resolver.resolve(queue.attributes[name])
            for name in QUEUE_ATTRIBUTES
            if name in queue.attributes
        }
        if visibility_timeout_seconds is not None:
            attributes["VisibilityTimeout"] = str(visibility_seconds(visibility_timeout_seconds))
        if queue.redrive_policy is not None:
            dead_letter_queue = created[queue.redrive_policy.dead_letter_queue_id]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": dead_letter_queue.arn,
                    "maxReceiveCount": int(resolver.resolve(queue.redrive_policy.max_receive_count)),
                }
            )
        name = local_queue_name(queue)
        url = _created_or_updated_queue(sqs, name, attributes)
        arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        created[queue.logical_id] = LocalQueue(queue.logical_id, name, url, arn)
        logger.debug("queue %s: %s", queue.logical_id, url)
    return created


def _created_or_updated_queue(
    sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]
) -> str:
    """The queue's URL, creating it; one a kept store restored (maas.local.store_state) keeps its messages
    and takes today's attributes (another visibility timeout, say)."""
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def visibility_seconds(seconds: float) -> int:
    """SQS counts visibility in whole seconds, 0 to 12 hours; a fraction rounds up, never down to 0."""
    if not 0 <= seconds <= MAX_VISIBILITY_TIMEOUT_SECONDS:
        raise ValueError(
            f"queue visibility: expected 0 to {MAX_VISIBILITY_TIMEOUT_SECONDS} seconds, got {seconds}"
        )
    return math.ceil(seconds)


def apply_bucket_notifications(
    s3: S3Client,
    notifications: Sequence[QueueNotification],
    *,
    bucket_names: Mapping[str, str],
    queues: Mapping[str, LocalQueue],
) -> None:
    """Give each bucket the QueueConfigurations the template declares for it (in the S3 API's shape)."""
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for notification in notifications:
        configuration: dict[str, Any] = {
            "QueueArn": queues[notification.queue_id].arn,
            "Events": [notification.event],
        }
        if notification.filter_rules:
            rules = [{"Name": name, "Value": value} for name, value in notification.filter_rules]
            configuration["Filter"] = {"Key": {"FilterRules": rules}}
        by_bucket.setdefault(notification.bucket_id, []).append(configuration)
    for bucket_id, configurations in by_bucket.items():
        # The stubs type Events as a Literal of event names; the template's names are S3's to check.
        s3.put_bucket_notification_configuration(
            Bucket=bucket_names[bucket_id],
            NotificationConfiguration={"QueueConfigurations": configurations},  # type: ignore[typeddict-item]
        )


# ---- events and responses


def sqs_event(messages: Sequence[Mapping[str, Any]], queue: LocalQueue) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping sends: one record per received message."""
    return {"Records": [sqs_record(message, queue) for message in messages]}


def sqs_record(message: Mapping[str, Any], queue: LocalQueue) -> dict[str, Any]:
    """One ReceiveMessage result in Lambda's record shape (camelCase, attributes as strings)."""
    system = message.get("Attributes") or {}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: system[name] for name in RECORD_ATTRIBUTES if name in system},
        "messageAttributes": {
            name: _record_message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        {
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue.arn,
            "awsRegion": queue.region,
        }
    )
    return record


def _record_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    attribute["stringListValues"] = list(value.get("StringListValues") or [])
    attribute["binaryListValues"] = [
        base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues") or []
    ]
    attribute["dataType"] = value["DataType"]
    return attribute


def failed_message_ids(
    result: Any, message_ids: Collection[str], *, report_batch_item_failures: bool
) -> frozenset[str]:
    """The messages of a batch that stay on the queue after the function returned `result`.

    Without ReportBatchItemFailures a return is a success. With it, as Lambda documents: no result,
    an empty response or an empty/null `batchItemFailures` is a success; each listed itemIdentifier
    stays; a response that is not that shape, or an itemIdentifier that is missing, empty or not a
    message of the batch, fails the whole batch.
    """
    everything = frozenset(message_ids)
    if not report_batch_item_failures:
        return frozenset()
    try:
        response = json.loads(json.dumps(result))
    except (TypeError, ValueError):
        return everything
    if response is None:
        return frozenset()
    if not isinstance(response, dict):
        return everything
    failures = response.get("batchItemFailures")
    if failures is None:
        return frozenset()
    if not isinstance(failures, list):
        return everything
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything
        failed.add(identifier)
    return frozenset(failed)


# ---- the pollers


class SqsPoller:
    """Lambda's event source mapping for one SQS event of one function, on a daemon thread."""

    def __init__(
        self,
        source: SqsEventSource,
        function: LocalFunction,
        queue: LocalQueue,
        sqs: SQSClient,
        *,
        batch_size: int = DEFAULT_SQS_BATCH_SIZE,
        batching_window_seconds: float = 0.0,
        wait_seconds: int = POLL_WAIT_SECONDS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(
                f"{source.function_id}.{source.event_id}.BatchSize: expected >= 1, got {batch_size}"
            )
        self.source = source
        self.function = function
        self.queue = queue
        self.batch_size = batch_size
        self.batching_window_seconds = max(0.0, batching_window_seconds)
        self._sqs = sqs
        self._wait_seconds = wait_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return f"{self.source.function_id}.{self.source.event_id}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"poller {self.name} is already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"maas-sqs-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after its current receive or invocation; `stop()` waits for it."""
        self._stopping.set()

    def stop(self) -> None:
        self.request_stop()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        invocation = min(self.function.timeout_seconds, STOP_WAIT_MAX_SECONDS)
        thread.join(invocation + self._wait_seconds + STOP_GRACE_SECONDS)
        if thread.is_alive():
            logger.warning(
                "%s: still invoking %s at shutdown; left running as the store stops",
                self.name,
                self.source.function_id,
            )

    def _run(self) -> None:
        failures_in_a_row = 0
        while not self._stopping.is_set():
            try:
                messages = self._receive_batch()
                if messages and not self._stopping.is_set():
                    self._deliver(messages)
                elif messages:
                    logger.info(
                        "%s: stopping; %d received message(s) return to the queue", self.name, len(messages)
                    )
                failures_in_a_row = 0
            except Exception as exc:
                if self._stopping.is_set():
                    return  # the store may already be going away; nothing to report
                failures_in_a_row += 1
                if failures_in_a_row == 1:  # once per outage, not once per retry
                    logger.warning("%s: cannot poll %s (%s); retrying", self.name, self.queue.name, exc)
                backoff = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures_in_a_row - 1))
                self._stopping.wait(backoff)

    def _receive_batch(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: the first receive long-polls, then the batching window fills it."""
        messages = self._receive(self.batch_size, self._wait_seconds)
        if not messages or self.batching_window_seconds <= 0:
            return messages
        deadline = time.monotonic() + self.batching_window_seconds
        while len(messages) < self.batch_size and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = min(self._wait_seconds, math.ceil(remaining))
            messages.extend(self._receive(self.batch_size - len(messages), wait))
        return messages

    def _receive(self, wanted: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue.url,
            MaxNumberOfMessages=min(wanted, MAX_MESSAGES_PER_CALL),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [dict(message) for message in response.get("Messages") or []]

    def _deliver(self, messages: Sequence[Mapping[str, Any]]) -> None:
        event = sqs_event(messages, self.queue)
        try:
            result = self.function.invoke(event)
        except Exception:
            logger.exception(
                "%s failed on %d message(s) from %s; they return after the visibility timeout",
                self.name,
                len(messages),
                self.queue.name,
            )
            return
        failed = failed_message_ids(
            result,
            [message["MessageId"] for message in messages],
            report_batch_item_failures=self.source.report_batch_item_failures,
        )
        if failed:
            logger.info(
                "%s: %d of %d message(s) failed; they return after the visibility timeout",
                self.name,
                len(failed),
                len(messages),
            )
        self._delete([message for message in messages if message["MessageId"] not in failed])

    def _delete(self, messages: Sequence[Mapping[str, Any]]) -> None:
        for start in range(0, len(messages), MAX_MESSAGES_PER_CALL):
            chunk = messages[start : start + MAX_MESSAGES_PER_CALL]
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ]
            response = self._sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=entries)
            for failure in response.get("Failed") or []:
                logger.warning(
                    "%s: could not delete a processed message (%s: %s); it will be delivered again",
                    self.name,
                    failure.get("Code"),
                    failure.get("Message"),
                )
