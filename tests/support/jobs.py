"""Batch jobs as the batch function meets them: the SQS message carrying S3's notification of an input
object, the Lambda context's clock, and readers for the output lines and status.json the job writes."""

from __future__ import annotations

import copy
import json
import random
from typing import Any
from urllib.parse import quote_plus

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from maas.registry import ManifestDraft
from maas.registry.manifest import MODEL_FILE
from maas.runtime import signature_of
from maas.service.job_layout import JobStatus
from tests.support.aws import TEST_BUCKET
from tests.support.events import load_event
from tests.support.models import IR_VERSION, OPSET


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


# ---- sharded jobs: the state machine's steps, driven as template.yaml's JobStateMachine drives them

# Retry TRANSIENT and RunShard's retry: the first attempt and 3 more.
STEP_ATTEMPTS = 4


def job_reference(input_key: str, version: int) -> dict[str, Any]:
    return {"input_key": input_key, "model_version": version}


def lambda_failure(exc: BaseException) -> dict[str, str]:
    """What a Catch hands on ($.failure) for a Lambda function that raised `exc`."""
    cause = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": ["  File ..."]}
    return {"Error": type(exc).__name__, "Cause": json.dumps(cause)}


class StepRun:
    """One execution of the jobs state machine over a batch function module: plan, each round's shards in
    a shuffled order (each retried as RunShard's Retry says, then recorded as failed), merge, until done.

    Records every step payload sent and what each returned or raised."""

    def __init__(self, function: Any, input_key: str, version: int, *, seed: int = 0) -> None:
        self.function = function
        self.job = job_reference(input_key, version)
        self.random = random.Random(seed)
        self.sent: list[dict[str, Any]] = []
        self.raised: list[tuple[str, str]] = []
        self.rounds: list[list[dict[str, Any]]] = []
        # Called with each round's items before they run: a test may change what the Map reads.
        self.before_round: Any = None
        # Called with each shard's item: the Lambda context its invocation gets (None: a fresh one's).
        self.shard_context: Any = None
        self.failure: dict[str, str] = {}

    def invoke(self, payload: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        self.sent.append(payload)
        answer: dict[str, Any] = self.function.lambda_handler(copy.deepcopy(payload), context or Context())
        return answer

    def run(self, s3: Any, *, duplicate_steps: bool = False) -> str:
        """Run to the end; "succeeded", or "failed" (a Fail state: JobFailed)."""
        work = self._task({"maas_job_step": "plan", "job": self.job})
        if work is None:
            return self._fail()
        while True:
            if work["failed"]:
                return "failed"
            if work["done"]:
                return "succeeded"
            items = json.loads(s3.get_object(Bucket=work["bucket"], Key=work["items_key"])["Body"].read())
            if self.before_round is not None:
                items = self.before_round(work["round"], items)
            self.rounds.append(items)
            order = list(items) * (2 if duplicate_steps else 1)
            self.random.shuffle(order)
            for shard in order:
                self._shard(shard)
            merge = {"maas_job_step": "merge", "job": self.job, "round": work["round"]}
            work = self._task(merge)
            if work is None:
                return self._fail()
            if duplicate_steps:
                assert self.invoke(merge) == work

    def _task(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        for _ in range(STEP_ATTEMPTS):
            try:
                return self.invoke(payload)
            except Exception as exc:
                self.raised.append((payload["maas_job_step"], type(exc).__name__))
                self.failure = lambda_failure(exc)
        return None

    def _fail(self) -> str:
        self.invoke({"maas_job_step": "fail", "job": self.job, "failure": self.failure})
        return "failed"

    def _shard(self, shard: dict[str, Any]) -> None:
        payload = {"maas_job_step": "shard", "job": self.job, "shard": shard}
        for _ in range(STEP_ATTEMPTS):
            try:
                self.invoke(payload, self.shard_context(shard) if self.shard_context is not None else None)
                return
            except Exception as exc:
                self.raised.append(("shard", type(exc).__name__))
                failure = lambda_failure(exc)
        self.invoke({"maas_job_step": "shard_failed", "job": self.job, "shard": shard, "failure": failure})


def batch_mean_model(width: int) -> tuple[dict[str, bytes], ManifestDraft]:
    """FP32 `x` [-1, width] -> `y` [-1, 1]: each row's sum plus the mean of those sums over the whole batch,
    so a row's answer tells which rows it ran with (a sharded job must run each in the single path's
    batch)."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axis_1"], ["sums"], keepdims=1),
            helper.make_node("ReduceMean", ["sums"], ["batch_mean"], axes=[0], keepdims=1),
            helper.make_node("Add", ["sums", "batch_mean"], ["y"]),
        ],
        "batch_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    content = model.SerializeToString()
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    draft = ManifestDraft(
        task="regression",
        description="Each row's sum plus its batch's mean sum.",
        model_file=MODEL_FILE,
        signature=signature_of(session),
    )
    return {MODEL_FILE: content}, draft
