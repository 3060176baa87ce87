"""Acceptance: text generation through the local stack's events, S3 notifications and SQS as template.yaml
wires them, answered as the HTTP API answers.

Given the tiny test decoder published as tiny-llm v1: a 1,000-line prompt job (JSONL of chat and completion
bodies without `model`) uploaded to jobs/tiny-llm/<job-id>/input.jsonl is answered line by line in
output.jsonl, with status.json counting lines and tokens; an async chat request sent to the AsyncQueue is
answered in results/<id>.json. Each answer is the one the HTTP API gives the same body (docs/jobs.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from maas.local import LocalStack
from tests.integration.waiting import eventually
from tests.support.http import send
from tests.support.llm import TINY_LLM_NAME, publish_tiny_llm

MODEL = TINY_LLM_NAME
LINES = 1000
# A hang guard only: a thousand short generations by the local batch function.
JOB_SECONDS = 600.0
# Fields an answer takes from its run, not from its body.
RUN_FIELDS = ("id", "created")
# (line, 1-based): the error its output line gives, after "line N: ".
BAD_LINES = {
    10: (b"{not json", "expected one JSON value per line"),
    500: (
        json.dumps({"prompt": "Hi", "temperature": 2.5}).encode(),
        "temperature: expected a number from 0 to 2",
    ),
}


@dataclass(frozen=True)
class Served:
    stack: LocalStack
    s3: Any
    sqs: Any

    def read(self, key: str) -> bytes | None:
        try:
            body: bytes = self.s3.get_object(Bucket=self.stack.store.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return body

    def over_http(self, body: dict[str, Any]) -> dict[str, Any]:
        """The HTTP API's answer to `body` for the version the events served, without its run's fields."""
        route = "chat/completions" if "messages" in body else "completions"
        request = json.dumps({**body, "model": f"{MODEL}:1"}).encode()
        answer = send("POST", f"{self.stack.url}/openai/v1/{route}", request, "application/json")
        assert answer.status == 200, answer.body
        return without_run_fields(answer.json())


@pytest.fixture(scope="module")
def served(isolated_module_env: pytest.MonkeyPatch) -> Iterator[Served]:
    with LocalStack(port=0, embedded=True, queue_visibility_seconds=1) as stack:
        publish_tiny_llm(stack.registry)
        endpoint = stack.store.endpoint_url
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        yield Served(stack, s3, sqs)


def without_run_fields(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in RUN_FIELDS}


def body_of(line: int) -> dict[str, Any]:
    """Line `line`'s body: chats and completions in turn, greedy or seeded, each with its own parameters."""
    if line % 2:
        return {
            "messages": [{"role": "user", "content": f"Tell me about {line}"}],
            "max_tokens": 3,
            "temperature": 0,
        }
    return {"prompt": f"Item {line} is", "max_tokens": 3, "temperature": 1.0, "seed": line}


def test_a_1000_line_prompt_job_answers_every_line_as_the_http_api_does(served: Served) -> None:
    folder = f"jobs/{MODEL}/prompts-{uuid.uuid4().hex[:8]}/"
    lines = [
        BAD_LINES[n][0] if n in BAD_LINES else json.dumps(body_of(n)).encode() for n in range(1, LINES + 1)
    ]

    served.s3.put_object(Bucket=served.stack.store.bucket, Key=f"{folder}input.jsonl", Body=b"\n".join(lines))

    status = json.loads(
        eventually(lambda: served.read(f"{folder}status.json"), f"{folder}status.json", timeout=JOB_SECONDS)
    )
    output = [json.loads(line) for line in (served.read(f"{folder}output.jsonl") or b"").splitlines()]
    assert (status["state"], status["model_version"]) == ("succeeded", 1)
    assert status["counts"] == {"lines": LINES, "succeeded": LINES - len(BAD_LINES), "failed": len(BAD_LINES)}
    assert len(output) == LINES
    for line, (_, error) in BAD_LINES.items():
        assert output[line - 1]["error"].startswith(f"line {line}: {error}"), output[line - 1]
    answered = [(n, output[n - 1]) for n in range(1, LINES + 1) if n not in BAD_LINES]
    assert status["tokens"]["completion_tokens"] == sum(a["usage"]["completion_tokens"] for _, a in answered)
    for line, answer in answered[::97]:
        assert without_run_fields(answer) == served.over_http(body_of(line)), line


def test_an_async_chat_request_is_answered_in_results_as_the_http_api_does(served: Served) -> None:
    request_id = f"chat-{uuid.uuid4().hex[:12]}"
    chat = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 6}
    greedy = {**chat, "temperature": 0}

    served.sqs.send_message(
        QueueUrl=served.stack.queue_url("AsyncQueue"),
        MessageBody=json.dumps({"model": MODEL, "id": request_id, **greedy}),
    )

    key = f"results/{request_id}.json"
    answer = json.loads(eventually(lambda: served.read(key), key))
    assert answer["object"] == "chat.completion"
    assert answer["model"] == f"{MODEL}:1"
    assert without_run_fields(answer) == served.over_http(greedy)
