"""Prompt jobs through the batch function as Lambda runs it: an SQS event carrying S3's notification of a
jobs/tiny-llm/<job-id>/input.jsonl, over moto, with the tiny test decoder (random weights, a 256-token
context) published as tiny-llm v1.

Each line is a chat completion or completion body without `model`; each output line is the OpenAI answer
the completion service gives that body, or the line's error.
"""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import Any

import pytest

from maas.protocol.openai_types import ChatCompletionRequest, CompletionRequest
from maas.registry import Manifest, ModelRegistry
from maas.service.completions import CompletionService
from tests.support.aws import TEST_BUCKET
from tests.support.functions import start_function
from tests.support.jobs import Context, job_event, read_lines, read_status, submit
from tests.support.logs import JsonLogs
from tests.support.models import text_normalizer_model
from tests.support.queues import stored_versions

MODEL = "tiny-llm"
SECRET = "my passport number is X1234567"
# Fields an answer gets from its run, not from its body: never equal between two runs.
RUN_FIELDS = ("id", "created")


@pytest.fixture
def llm_batch_function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest) -> ModuleType:
    return start_function(monkeypatch, "batch", MAAS_INTRA_OP_THREADS="1")


def body_of(line: int) -> dict[str, Any]:
    """Line `line`'s body (1-based): completions and chats in turn, each with its own parameters."""
    kind = line % 5
    if kind == 0:
        return {"prompt": f"Item {line} is", "max_tokens": 4, "temperature": 0}
    if kind == 1:
        return {
            "messages": [{"role": "user", "content": f"Say something about {line}"}],
            "max_tokens": 3,
            "temperature": 0,
        }
    if kind == 2:
        return {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Line {line}"},
            ],
            "max_completion_tokens": 4,
            "temperature": 0.9,
            "top_p": 0.95,
            "top_k": 20,
            "seed": line,
        }
    if kind == 3:
        return {"prompt": [f"One {line}", f"Two {line}"], "max_tokens": 2, "temperature": 0, "logprobs": 2}
    return {
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"Part {line}"}]}],
        "max_tokens": 4,
        "temperature": 0,
        "n": 2,
        "stop": ["\n", "."],
    }


# Bad lines of the 1,000 (1-based), each with the error its output line gives, after "line N: ".
BAD_LINES: dict[int, tuple[bytes, str]] = {
    7: (b"{not json", "expected one JSON value per line, got text that is not JSON"),
    100: (b"", "expected a JSON value, got an empty line"),
    233: (b'["a", "list"]', "expected a JSON object with 'messages' (a chat completion) or 'prompt'"),
    250: (
        json.dumps({"model": "other", "prompt": "Hi", "max_tokens": 2}).encode(),
        "model: expected none, as every line is answered by the model the job's key names",
    ),
    404: (
        json.dumps({"prompt": "Hi", "max_tokens": 2, "temperature": 2.5}).encode(),
        "temperature: expected a number from 0 to 2, got 2.5",
    ),
    512: (
        json.dumps({"prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}]}).encode(),
        "expected either 'messages' (a chat completion) or 'prompt' (a completion), got both",
    ),
    600: (json.dumps({"max_tokens": 2}).encode(), "expected either 'messages'"),
    677: (
        json.dumps({"prompt": "Hi", "max_tokens": 2, "stream": True}).encode(),
        "stream: expected false or none, as the answer is written whole to S3",
    ),
    800: (
        json.dumps({"messages": [{"role": "wizard", "content": SECRET}]}).encode(),
        "messages[0].role: expected system, developer, user or assistant, got 'wizard'",
    ),
    901: (
        json.dumps({"prompt": "Hi", "max_tokens": 10_000}).encode(),
        "max_tokens: expected at most",
    ),
    999: (json.dumps({"prompt": "Hi", "best_friend": 1}).encode(), "best_friend: unknown field"),
}
LINES = 1000


def job_lines() -> list[bytes]:
    return [
        BAD_LINES[line][0] if line in BAD_LINES else json.dumps(body_of(line)).encode()
        for line in range(1, LINES + 1)
    ]


def service_answer(service: CompletionService, body: dict[str, Any]) -> dict[str, Any]:
    """What the completion service answers the same body with, sent for the version the job served."""
    body = {**body, "model": f"{MODEL}:1"}
    if "messages" in body:
        document = service.chat(ChatCompletionRequest.model_validate(body)).response().model_dump_json()
    else:
        document = service.complete(CompletionRequest.model_validate(body)).response().model_dump_json()
    return without_run_fields(json.loads(document))


def without_run_fields(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in RUN_FIELDS}


def test_a_1000_line_prompt_job_answers_each_line_in_order_as_the_completion_service_does(
    llm_batch_function: ModuleType, s3: Any
) -> None:
    folder = f"jobs/{MODEL}@latest/prompts-1000/"
    submit(s3, folder + "input.jsonl", b"\n".join(job_lines()) + b"\n")

    response = llm_batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    assert response == {"batchItemFailures": []}
    out = read_lines(s3, folder + "output.jsonl")
    assert len(out) == LINES
    for line, (_, error) in BAD_LINES.items():
        assert out[line - 1]["error"].startswith(f"line {line}: {error}"), out[line - 1]
    answered = {line: out[line - 1] for line in range(1, LINES + 1) if line not in BAD_LINES}
    for line, answer in answered.items():
        body = body_of(line)
        assert answer["object"] == ("chat.completion" if "messages" in body else "text_completion")
        assert answer["model"] == answer["system_fingerprint"] == f"{MODEL}:1"
        choices = (len(body["prompt"]) if isinstance(body["prompt"], list) else 1) if "prompt" in body else 1
        assert len(answer["choices"]) == choices * body.get("n", 1)
        most = body.get("max_tokens") or body["max_completion_tokens"]
        assert answer["usage"]["completion_tokens"] <= most * len(answer["choices"])
    # The same body sent to the completion service gets the same answer: at temperature 0, and seeded.
    service = CompletionService.from_settings()
    for line in range(1, LINES + 1, 37):
        if line not in BAD_LINES:
            assert without_run_fields(answered[line]) == service_answer(service, body_of(line)), line

    status = read_status(s3, folder)
    assert (status.state, status.model, status.model_version) == ("succeeded", f"{MODEL}@latest", 1)
    assert (status.counts.lines, status.counts.succeeded, status.counts.failed) == (
        LINES,
        LINES - len(BAD_LINES),
        len(BAD_LINES),
    )
    assert [error.line for error in status.errors] == sorted(BAD_LINES)
    # The status names each line in its own field, the output line in its message: neither twice.
    assert [f"line {error.line}: {error.error}" for error in status.errors] == [
        out[line - 1]["error"] for line in sorted(BAD_LINES)
    ]
    assert not any(error.error.startswith("line ") for error in status.errors)
    assert status.tokens is not None
    assert status.tokens.prompt_tokens == sum(a["usage"]["prompt_tokens"] for a in answered.values())
    assert status.tokens.completion_tokens == sum(a["usage"]["completion_tokens"] for a in answered.values())
    assert status.tokens.time_budget_exhausted_lines == 0


def test_the_same_notification_twice_leaves_one_output_and_one_status(
    llm_batch_function: ModuleType, s3: Any
) -> None:
    folder = f"jobs/{MODEL}/prompts-dup/"
    submit(s3, folder + "input.jsonl", b"\n".join(json.dumps(body_of(n)).encode() for n in range(1, 6)))
    event = job_event(folder + "input.jsonl")

    first = llm_batch_function.lambda_handler(event, Context())
    written = stored_versions(s3, folder)
    second = llm_batch_function.lambda_handler(copy.deepcopy(event), Context())

    assert first == second == {"batchItemFailures": []}
    assert [key for key, _ in written] == [
        folder + name for name in ("input.jsonl", "output.jsonl", "status.json")
    ]
    assert stored_versions(s3, folder) == written


@pytest.mark.parametrize(("input_format", "body"), [("csv", b"Hello,there\n"), ("npy", b"\x93NUMPY")])
def test_a_text_generators_job_takes_jsonl_only(
    llm_batch_function: ModuleType, s3: Any, input_format: str, body: bytes
) -> None:
    folder = f"jobs/{MODEL}/prompts-{input_format}/"
    submit(s3, f"{folder}input.{input_format}", body)

    response = llm_batch_function.lambda_handler(job_event(f"{folder}input.{input_format}"), Context())

    assert response == {"batchItemFailures": []}
    status = read_status(s3, folder)
    assert (status.state, status.output_key) == ("failed", None)
    assert status.error == (
        f"input.{input_format}: expected input.jsonl, as model '{MODEL}' v1 generates text: one chat "
        "completion ('messages') or completion ('prompt') body per line"
    )


def test_a_line_that_reaches_its_generation_budget_ends_with_length_and_is_counted(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_llm: Manifest
) -> None:
    function = start_function(monkeypatch, "batch", MAAS_INTRA_OP_THREADS="1", MAAS_GENERATION_TIMEOUT="1e-9")
    folder = f"jobs/{MODEL}/prompts-budget/"
    submit(s3, folder + "input.jsonl", json.dumps({"prompt": "Hello", "max_tokens": 4}).encode())

    function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    (line,) = read_lines(s3, folder + "output.jsonl")
    assert line["choices"][0]["finish_reason"] == "length"
    assert line["maas"] == {"time_budget_exhausted": True}
    status = read_status(s3, folder)
    assert status.state == "succeeded"
    assert status.tokens is not None and status.tokens.time_budget_exhausted_lines == 1


def test_a_prompt_job_that_runs_out_of_the_functions_time_says_so(
    llm_batch_function: ModuleType, s3: Any
) -> None:
    folder = f"jobs/{MODEL}/prompts-slow/"
    submit(s3, folder + "input.jsonl", b"\n".join(json.dumps(body_of(n)).encode() for n in range(1, 4)))

    llm_batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context(remaining_ms=5_000))

    status = read_status(s3, folder)
    assert (status.state, status.output_key) == ("failed", None)
    assert status.error == (
        "job: expected to finish within the function's timeout, got through 0 lines; "
        "split the input into smaller jobs"
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=folder + "output")


def test_prompts_and_answers_never_reach_the_logs(
    llm_batch_function: ModuleType, s3: Any, capsys: pytest.CaptureFixture[str], json_logs: JsonLogs
) -> None:
    folder = f"jobs/{MODEL}/prompts-private/"
    lines = [
        {"messages": [{"role": "user", "content": SECRET}], "max_tokens": 3, "temperature": 0},
        {"prompt": SECRET, "max_tokens": 3, "temperature": 0},
        {"messages": [{"role": "wizard", "content": SECRET}]},
        {"prompt": SECRET, "max_tokens": 100_000},
    ]
    submit(s3, folder + "input.jsonl", b"\n".join(json.dumps(line).encode() for line in lines))

    llm_batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    assert read_status(s3, folder).counts.failed == 2
    captured = capsys.readouterr()
    assert "job finished" in json_logs.text and "generation finished" in json_logs.text
    assert "X1234567" not in captured.out + captured.err + json_logs.text


def test_a_job_for_a_model_that_generates_no_text_still_runs_its_rows(
    llm_batch_function: ModuleType, s3: Any, registry: ModelRegistry
) -> None:
    registry.publish("lowercase", *text_normalizer_model())
    folder = "jobs/lowercase/rows/"
    submit(s3, folder + "input.jsonl", b'"HeLLo"\n{"prompt": "Hi"}\n"WORLD"\n')

    llm_batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    out = read_lines(s3, folder + "output.jsonl")
    assert [line.get("outputs", {}).get("lowered") for line in out] == ["hello", None, "world"]
    assert out[1]["error"].startswith("line 2: ")
    status = read_status(s3, folder)
    assert (status.state, status.tokens) == ("succeeded", None)
