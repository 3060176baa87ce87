"""SQS event sources: batch-job notifications and async inference requests, with partial batch failures.

Each record ends one of three ways, the way Lambda's SQS semantics reward:
- answered: a result (or an error result for a bad request) is written, and the message is deleted;
- transient failure (storage, a model that cannot load now): reported in `batchItemFailures`, so SQS
  delivers it again and, after `maxReceiveCount`, moves it to the dead-letter queue;
- poison (a job notification that cannot be understood at all, so there is no job to write a status
  for): reported as a failure every time, and so it ends in the dead-letter queue for a person to look at.

An async request is a V2 request ("inputs"), a chat completion ("messages") or a completion ("prompt"),
each with its "model": a V2 request is answered with the V2 response, the others with the OpenAI response
object (maas.service.event_completions), and a body that is more than one of them, or none, is a client
mistake. An async request always has somewhere to go: its "id", or else the SQS message id, names its
result, so every body that is not a request (not JSON, not an object, nested too deep) is a client mistake
and gets an error result like any other bad request. Results are create-only, so a message delivered
twice is answered once.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.errors import InvalidInput, MaasError, Unavailable
from maas.events.requests import decode_event_request
from maas.objects import object_exists, put_new
from maas.observability import MetricUnit, logger, metrics
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import encode_infer_response
from maas.service.generation_on_demand import asks_for_text
from maas.service.job_layout import AsyncError, JobLocation, job_key_from_event, result_key, validate_id
from maas.service.json_values import NotJson, json_kind, loads_json

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    # Types only: the async function would otherwise import the batch-job stack it never runs.
    from maas.service.batch_jobs import BatchJobService
    from maas.service.event_completions import EventCompletions
    from maas.service.inference import InferenceService

S3_TEST_EVENT = "s3:TestEvent"
V2_INPUTS_FIELD = "inputs"
_REQUEST_KINDS = "one of 'inputs' (a V2 request), 'messages' (a chat completion) or 'prompt' (a completion)"


class PoisonMessage(MaasError, status=400):
    """A message nobody can answer: it goes back to the queue until the dead-letter queue takes it."""


class _QueueApp:
    def __init__(self) -> None:
        # raise_on_entire_batch_failure=False: a batch whose every record failed is still a partial
        # response, so Lambda (and the local poller) retries exactly the failed ids.
        self._processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        # The invocation's clock (Lambda's context), for the records it handles.
        self._remaining_ms: Callable[[], int] | None = None

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        self._remaining_ms = context.get_remaining_time_in_millis if context is not None else None
        response = process_partial_response(
            event=dict(event), record_handler=self._handle, processor=self._processor, context=context
        )
        return dict(response)

    def _handle(self, record: SQSRecord) -> None:
        # Each record is its own piece of work: its logs carry its message id.
        logger.set_correlation_id(record.message_id)
        try:
            self.handle(record)
        except Exception as exc:
            _log_failure(record, exc)
            raise

    def handle(self, record: SQSRecord) -> None:
        raise NotImplementedError


class BatchFunctionApp(_QueueApp):
    """Job notifications: each SQS body is an S3 event for jobs/<model-ref>/<job-id>/input.<format>."""

    def __init__(self, jobs: BatchJobService) -> None:
        super().__init__()
        self.jobs = jobs

    def handle(self, record: SQSRecord) -> None:
        notification = _json_body(record, "an S3 event notification")
        if notification.get("Event") == S3_TEST_EVENT:
            return  # S3 sends one when the notification is configured
        if not isinstance(notification.get("Records"), list):
            raise PoisonMessage("message: expected an S3 event notification with Records")
        for s3_record in S3Event(notification).records:
            bucket = s3_record.s3.bucket.name
            if bucket != self.jobs.bucket:
                raise PoisonMessage(f"message: expected events of bucket {self.jobs.bucket}, got {bucket!r}")
            if not s3_record.event_name.startswith("ObjectCreated"):
                continue
            key = job_key_from_event(s3_record.s3.get_object.key)
            try:
                job = JobLocation.from_input_key(key, self.jobs.prefix)
            except InvalidInput as exc:
                self.jobs.reject(key, exc.message)
                continue
            self.jobs.run(job, self._remaining_ms)


class AsyncFunctionApp(_QueueApp):
    """Async requests: each SQS body is {"model", "id", "inputs" | "messages" | "prompt", ...}; the answer
    goes to results/<id>.json.

    Without an "id" the SQS message id names the result (SendMessage returns it to the sender)."""

    def __init__(
        self,
        inference: InferenceService,
        s3: S3Client,
        bucket: str,
        completions: Callable[[], EventCompletions],
        prefix: str = "",
    ) -> None:
        super().__init__()
        self.inference = inference
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.limits = TensorLimits.from_settings(inference.settings)
        # Built on first use (maas.service.generation_on_demand): most containers never generate text.
        self.completions = completions

    def handle(self, record: SQSRecord) -> None:
        body, body_error = _request_body(record.body)
        request_id, id_error = record.message_id, body_error
        given = body.get("id")
        if given is not None:
            try:
                request_id = validate_id(given if isinstance(given, str) else "", field="id")
            except InvalidInput as exc:
                id_error = exc.message
        try:
            key = result_key(request_id, self.prefix)
        except InvalidInput:
            raise PoisonMessage(
                "message: expected a message id that can name a result key, got one that cannot"
            ) from None
        if object_exists(self.s3, self.bucket, key):
            logger.info("async request already answered; duplicate delivery ignored", extra={"key": key})
            return
        model = body.get("model") if isinstance(body.get("model"), str) else None
        try:
            if id_error is not None:
                raise InvalidInput(
                    f"{id_error}; the answer is filed under the message id {record.message_id}"
                )
            document = self._answer(body)
            metrics.add_metric(name="AsyncAnswered", unit=MetricUnit.Count, value=1)
        except Unavailable:
            raise
        except MaasError as exc:
            document = (
                AsyncError(id=request_id, model=_printable(model), status=exc.status, error=exc.message)
                .model_dump_json(exclude_none=True)
                .encode()
            )
            metrics.add_metric(name="AsyncErrors", unit=MetricUnit.Count, value=1)
            # A body that is no request at all may be a producer sending to the wrong queue: worth a look.
            log = logger.warning if body_error is not None else logger.info
            log(
                "async request answered with an error",
                extra={"key": key, "status": exc.status, "error": exc.message},
            )
        if not put_new(self.s3, self.bucket, key, document):
            logger.info("async request answered by another delivery meanwhile", extra={"key": key})

    def _answer(self, body: dict[str, Any]) -> bytes:
        """The result document of a request body, by its kind."""
        v2 = V2_INPUTS_FIELD in body
        if asks_for_text(body):
            if v2:
                raise InvalidInput(f"message: expected {_REQUEST_KINDS}, got more than one")
            return self.completions().answer_async(body, self._remaining_ms).document
        if not v2:
            raise InvalidInput(f"message: expected {_REQUEST_KINDS}, got none")
        answer = decode_event_request(body, self.limits).answer(self.inference)
        return encode_infer_response(answer).content


def _request_body(text: str) -> tuple[dict[str, Any], str | None]:
    """An async body as a JSON object, read as a jsonl line is (loads_json); else {} and why not.

    Whatever the body, the sender gets an answer: one that cannot be read as an object is a client
    mistake answered under the message id, which SendMessage returned to the sender."""
    expected = "message: expected a JSON object with 'model', 'id' and 'inputs'"
    try:
        # SQS bodies are text; a byte-order mark from a Windows tool is not part of the JSON.
        body = loads_json(text.removeprefix("\ufeff"))
    except NotJson as exc:
        return {}, f"{expected}, got {exc.got}"
    if not isinstance(body, dict):
        return {}, f"{expected}, got a JSON {json_kind(body)}"
    return body, None


def _printable(text: str | None) -> str | None:
    """A model reference as given, unless it cannot be written as UTF-8 (a lone surrogate from an escape)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def _json_body(record: SQSRecord, expected: str) -> dict[str, Any]:
    try:
        body = json.loads(record.body)
    except (ValueError, RecursionError):
        # RecursionError: thousands of nested brackets, which no request needs.
        raise PoisonMessage(
            f"message: expected {expected}, got a body that is not JSON (or nested too deep)"
        ) from None
    if not isinstance(body, dict):
        raise PoisonMessage(f"message: expected {expected}, got JSON that is not an object")
    return body


def _log_failure(record: SQSRecord, exc: Exception) -> None:
    receives = record.attributes.approximate_receive_count
    if isinstance(exc, MaasError):
        logger.warning(
            "message not processed; it will be delivered again",
            extra={
                "message_id": record.message_id,
                "receives": receives,
                "status": exc.status,
                "error": exc.message,
            },
        )
    else:
        # The type and the frames only: an exception's text can quote the payload.
        logger.error(
            "message failed unexpectedly; it will be delivered again",
            extra={
                "message_id": record.message_id,
                "receives": receives,
                "error_type": type(exc).__name__,
                "traceback": "".join(traceback.format_tb(exc.__traceback__)),
            },
        )
