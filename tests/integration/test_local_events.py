"""The event topology of template.yaml, end to end on the local stack: the real batch and async functions,
moto's S3 notifications and SQS redrive, and a tiny seed-mlp published into the embedded store.

Queues use a 1 s visibility timeout instead of the template's minutes, so a failed message comes back
after about a second and reaches its dead-letter queue after maxReceiveCount (3) receives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnxruntime as ort
import pytest

from maas.cli import main
from maas.local.stack import LocalStack
from maas.local.stack_banner import example_infer_body
from maas.training import TrainedModel, publish_trained
from tests.integration.waiting import eventually
from tests.support.s3_objects import read_object

MAX_RECEIVES = 3


@pytest.fixture(scope="module")
def stack(isolated_module_env: pytest.MonkeyPatch, seed_model: TrainedModel) -> Iterator[LocalStack]:
    """The stack with the root conftest's tiny seed-mlp (trained once per session) as version 1."""
    with LocalStack(port=0, embedded=True, queue_visibility_seconds=1) as running:
        manifest = publish_trained(seed_model, running.registry)
        assert (manifest.name, manifest.version) == ("seed-mlp", 1)
        yield running


@pytest.fixture(scope="module")
def sqs(stack: LocalStack) -> Any:
    return boto3.client("sqs", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")


@pytest.fixture(scope="module")
def s3(stack: LocalStack) -> Any:
    return boto3.client("s3", endpoint_url=stack.store.endpoint_url, region_name="us-east-1")


def messages_left(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def rows(count: int, seed: int) -> list[list[float]]:
    generator = np.random.default_rng(seed)
    return [[round(float(v), 4) for v in generator.normal(size=10)] for _ in range(count)]


def v2_inputs(batch: list[list[float]]) -> list[dict[str, Any]]:
    flat = [value for row in batch for value in row]
    return [{"name": "input", "datatype": "FP32", "shape": [len(batch), 10], "data": flat}]


def served_over_http(stack: LocalStack, http: Any, batch: list[list[float]]) -> np.ndarray:
    body = json.dumps({"inputs": v2_inputs(batch)}).encode()
    result = http("POST", f"{stack.url}/v2/models/seed-mlp/infer", body, "application/json")
    assert result.status == 200, result.body
    return np.asarray(result.json()["outputs"][0]["data"], dtype=np.float32).reshape(len(batch), 10)


# ---- async requests over SQS


def test_an_async_request_is_answered_in_results_with_a_v2_response(
    stack: LocalStack, sqs: Any, s3: Any, http: Any
) -> None:
    request_id = f"r-{uuid.uuid4().hex[:12]}"
    batch = rows(2, seed=1)
    url = stack.queue_url("AsyncQueue")

    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"model": "seed-mlp", "id": request_id, "inputs": v2_inputs(batch)}),
    )

    key = f"results/{request_id}.json"
    document = json.loads(eventually(lambda: read_object(s3, stack.store.bucket, key), key))
    assert (document["model_name"], document["model_version"]) == ("seed-mlp", "1")
    (output,) = document["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [2, 10])
    answered = np.asarray(output["data"], dtype=np.float32).reshape(2, 10)
    np.testing.assert_allclose(answered, served_over_http(stack, http, batch), rtol=0, atol=1e-6)
    eventually(lambda: messages_left(sqs, url) == 0, "the answered request to be deleted")


def test_an_unreadable_async_body_is_answered_under_its_message_id_and_the_rest_are_answered(
    stack: LocalStack, sqs: Any, s3: Any
) -> None:
    url = stack.queue_url("AsyncQueue")
    ids = [f"good-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    bodies = [
        json.dumps({"model": "seed-mlp", "id": i, "inputs": v2_inputs(rows(1, seed=n))})
        for n, i in enumerate(ids)
    ]

    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(n), "MessageBody": body}
            for n, body in enumerate([bodies[0], f"not json {uuid.uuid4().hex[:8]}", bodies[1]])
        ],
    )

    # SendMessage told the sender the message id, which names the answer to a body without a readable id.
    message_id = next(entry["MessageId"] for entry in sent["Successful"] if entry["Id"] == "1")
    key = f"results/{message_id}.json"
    error = json.loads(eventually(lambda: read_object(s3, stack.store.bucket, key), key))
    assert error["status"] == 400 and "got text that is not JSON" in error["error"]
    for request_id in ids:
        answer = eventually(
            partial(read_object, s3, stack.store.bucket, f"results/{request_id}.json"), request_id
        )
        assert json.loads(answer)["model_name"] == "seed-mlp"
    eventually(lambda: messages_left(sqs, url) == 0, "AsyncQueue to be empty")
    assert messages_left(sqs, stack.queue_url("AsyncDeadLetterQueue")) == 0


def test_a_job_notification_that_is_not_an_s3_event_reaches_the_dead_letter_queue_after_max_receives(
    stack: LocalStack, sqs: Any
) -> None:
    url = stack.queue_url("JobsQueue")
    dead_letter_url = stack.queue_url("JobsDeadLetterQueue")
    poison = f"not json {uuid.uuid4().hex[:8]}"

    sqs.send_message(QueueUrl=url, MessageBody=poison)

    def dead_letter_copy() -> dict[str, Any] | None:
        response = sqs.receive_message(
            QueueUrl=dead_letter_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        )
        matching = [m for m in response.get("Messages", []) if m["Body"] == poison]
        return matching[0] if matching else None

    dead: dict[str, Any] = eventually(dead_letter_copy, "the poison message in JobsDeadLetterQueue")
    # The function received it maxReceiveCount times; this test's receive from the DLQ is one more.
    assert int(dead["Attributes"]["ApproximateReceiveCount"]) == MAX_RECEIVES + 1
    eventually(lambda: messages_left(sqs, url) == 0, "JobsQueue to be empty")


# ---- batch jobs from S3 uploads


def test_uploading_a_job_input_produces_its_output_and_status(stack: LocalStack, s3: Any, http: Any) -> None:
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    folder = f"jobs/seed-mlp/{job_id}/"
    batch = rows(3, seed=7)
    lines = "".join(json.dumps(row) + "\n" for row in batch)

    s3.put_object(Bucket=stack.store.bucket, Key=folder + "input.jsonl", Body=lines.encode())

    status = json.loads(
        eventually(lambda: read_object(s3, stack.store.bucket, folder + "status.json"), "status.json")
    )
    assert status["state"] == "succeeded", status
    assert (status["job_id"], status["model_name"], status["model_version"]) == (job_id, "seed-mlp", 1)
    assert status["counts"] == {"lines": 3, "succeeded": 3, "failed": 0}
    output = read_object(s3, stack.store.bucket, folder + "output.jsonl")
    assert output is not None
    outputs = [json.loads(line)["outputs"]["output"] for line in output.decode().splitlines()]
    np.testing.assert_allclose(
        np.asarray(outputs, dtype=np.float32), served_over_http(stack, http, batch), rtol=0, atol=1e-6
    )


def test_other_keys_under_jobs_start_no_job(stack: LocalStack, sqs: Any, s3: Any) -> None:
    bucket = stack.store.bucket
    body = (json.dumps(rows(1, seed=3)[0]) + "\n").encode()
    ignored = [
        f"jobs/seed-mlp/{uuid.uuid4().hex[:12]}/output.jsonl",
        f"jobs/seed-mlp/{uuid.uuid4().hex[:12]}/status.json",
        f"jobs/seed-mlp/{uuid.uuid4().hex[:12]}/notes.txt",
        f"jobs/seed-mlp/{uuid.uuid4().hex[:12]}/input.jsonl.bak",
    ]
    for key in ignored:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    # A real job after them: once it is done and the queue is empty, anything they had queued was handled.
    witness = f"jobs/seed-mlp/{uuid.uuid4().hex[:12]}/"
    s3.put_object(Bucket=bucket, Key=witness + "input.jsonl", Body=body)

    eventually(lambda: read_object(s3, bucket, witness + "status.json"), "the witness job's status")
    eventually(lambda: messages_left(sqs, stack.queue_url("JobsQueue")) == 0, "JobsQueue to be empty")
    for key in ignored:
        folder = key.rsplit("/", 1)[0] + "/"
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])
        assert [o["Key"] for o in listed] == [key], f"{key} started something"


# ---- what make serve prints


def test_the_banner_says_how_to_start_a_job_and_send_an_async_request(stack: LocalStack) -> None:
    banner = stack.banner()

    assert f"s3://{stack.store.bucket}/jobs/seed-mlp/<job-id>/input.jsonl" in banner
    assert "maas jobs submit rows.jsonl --model seed-mlp" in banner
    assert f"--queue-url {stack.queue_url('AsyncQueue')}" in banner
    assert "results/r1.json" in banner
    printed_body = banner.split("--message-body '", 1)[1].split("'", 1)[0]
    assert json.loads(printed_body) == {
        "model": "seed-mlp",
        "id": "r1",
        "inputs": example_infer_body(rows=1)["inputs"],
    }


def test_a_100000_line_job_submitted_with_the_cli_answers_every_line_in_order(
    stack: LocalStack, seed_model: TrainedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance line: 100,000 lines in, 100,000 out in the same order, with onnxruntime's values."""
    count = 100_000
    inputs = np.round(np.random.default_rng(11).normal(size=(count, 10)), 4).astype(np.float32)
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in inputs.tolist()) + "\n")
    answers = tmp_path / "answers.jsonl"

    exit_code = main(
        [
            "jobs",
            "submit",
            str(source),
            "--model",
            "seed-mlp",
            "--out",
            str(answers),
            "--poll",
            "0.2",
            "--json",
        ]
    )

    # The functions run in this process, so their JSON logs share stdout with the CLI's one document.
    report = [document for document in json_documents(capsys.readouterr().out) if "job" in document][-1]
    assert exit_code == 0, report
    assert (report["state"], report["model_version"]) == ("succeeded", 1)
    assert report["counts"] == {"lines": count, "succeeded": count, "failed": 0}
    lines = answers.read_text().splitlines()
    assert len(lines) == count
    served = np.asarray([json.loads(line)["outputs"]["output"] for line in lines], dtype=np.float32)
    session = ort.InferenceSession(seed_model.files["model.onnx"], providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": inputs})[0]
    # Every line, so a swapped pair would fail; printf's 9 digits round-trip float32 exactly.
    np.testing.assert_array_equal(served, expected)


def json_documents(text: str) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    position = 0
    while (start := text.find("{", position)) >= 0:
        document, position = decoder.raw_decode(text, start)
        yield document
