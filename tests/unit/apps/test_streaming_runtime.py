"""Our runtime loop against a Runtime API stand-in, byte for byte: a REST API event is answered by the
stream handler in Lambda's streaming mode (headers, the JSON prelude, eight NULs, then each chunk the moment
it exists, error trailers when it breaks); anything else by lambda_handler, posted whole; a function that
cannot load is an init error."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maas.api.http_stream import SSE_DONE, HttpStream, sse_event
from maas.apps.runtime_api import RuntimeApiClient
from maas.apps.streaming_runtime import FunctionHandlers, StreamingRuntime, is_streamed, main
from tests.support.events import load_event
from tests.support.logs import JsonLogs
from tests.support.paths import ROOT
from tests.support.runtime_api import FUNCTION_ARN, Posted, RuntimeApiStandIn, runtime_api_stand_in

RESPONSE = "/2018-06-01/runtime/invocation/req-1/response"


@pytest.fixture
def stand_in() -> Iterator[RuntimeApiStandIn]:
    with runtime_api_stand_in() as running:
        yield running


def chat_event() -> dict[str, Any]:
    """A real REST API proxy event, pointed at the chat route the streaming API carries."""
    event = load_event("rest_v1_infer.json")
    event.update(
        resource="/openai/v1/chat/completions", path="/openai/v1/chat/completions", pathParameters=None
    )
    event["requestContext"].update(resourcePath="/openai/v1/chat/completions")
    event["body"] = json.dumps({"model": "smollm2-135m@production", "stream": True, "messages": []})
    return event


class Function:
    """A function module's two handlers, recording what they were given."""

    def __init__(self, stand_in: RuntimeApiStandIn, chunks: Iterator[bytes] | None = None) -> None:
        self.stand_in = stand_in
        self.chunks = chunks
        self.calls: list[tuple[str, Any, Any]] = []
        self.closed = False

    def lambda_handler(self, event: Any, context: Any) -> dict[str, Any]:
        self.calls.append(("lambda_handler", event, context))
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": '{"ok":true}'}

    def stream_handler(self, event: Any, context: Any) -> HttpStream:
        self.calls.append(("stream_handler", event, context))
        headers = {"Content-Type": "text/event-stream", "Set-Cookie": "seen=1"}
        return HttpStream(200, headers, self.chunks if self.chunks is not None else self.tokens())

    def tokens(self) -> Iterator[bytes]:
        try:
            yield sse_event({"token": "The"})
            # The prelude and "The" must have reached Lambda before " capital" exists.
            if not self.stand_in.wait_for_chunks(2):
                raise AssertionError("the first token was held back")
            yield b""
            yield sse_event({"token": " capital"})
            yield SSE_DONE
        finally:
            self.closed = True

    def runtime(self) -> StreamingRuntime:
        handlers = FunctionHandlers(self.lambda_handler, self.stream_handler)
        environ = {
            "AWS_LAMBDA_FUNCTION_NAME": "maas-dev-GenerateFunction",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        }
        return StreamingRuntime(RuntimeApiClient(self.stand_in.address), handlers, environ)


def only_post(stand_in: RuntimeApiStandIn) -> Posted:
    (posted,) = stand_in.posted
    return posted


def test_a_rest_api_event_is_streamed_with_the_prelude_then_each_chunk_as_it_comes(
    stand_in: RuntimeApiStandIn,
) -> None:
    function = Function(stand_in)
    stand_in.invoke("req-1", chat_event(), Lambda_Runtime_Trace_Id="Root=1-abc-def;Sampled=1")

    function.runtime().run(invocations=1)

    posted = only_post(stand_in)
    assert posted.path == RESPONSE
    assert posted.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert posted.header("Transfer-Encoding") == "chunked"
    assert posted.header("Content-Type") == "application/vnd.awslambda.http-integration-response"
    assert (
        posted.header("Trailer") == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    )
    prelude, delimiter, body = posted.body.partition(b"\0" * 8)
    assert json.loads(prelude) == {
        "statusCode": 200,
        "headers": {"Content-Type": "text/event-stream"},
        "cookies": ["seen=1"],
    }
    assert delimiter == b"\0" * 8
    assert body == b'data: {"token":"The"}\n\ndata: {"token":" capital"}\n\ndata: [DONE]\n\n'
    # One HTTP chunk per chunk produced (the empty one skipped: it would end the body), and no trailers.
    assert posted.chunks == [prelude + delimiter, *_events(body)]
    assert posted.raw.endswith(b"0\r\n\r\n")
    assert posted.trailers == []
    assert function.closed


def _events(body: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


def test_the_handler_gets_the_event_and_a_context_from_the_invocation_headers(
    stand_in: RuntimeApiStandIn,
) -> None:
    function = Function(stand_in)
    event = chat_event()
    stand_in.invoke("req-1", event)

    function.runtime().run(invocations=1)

    ((name, received, context),) = function.calls
    assert (name, received) == ("stream_handler", event)
    assert context.aws_request_id == "req-1"
    assert context.invoked_function_arn == FUNCTION_ARN
    assert context.function_name == "maas-dev-GenerateFunction"
    assert context.memory_limit_in_mb == 3008
    assert context.get_remaining_time_in_millis() > 0


def test_a_failure_after_the_first_byte_ends_in_an_sse_error_event_and_the_error_trailers(
    stand_in: RuntimeApiStandIn, json_logs: JsonLogs
) -> None:
    prompt = json.loads(chat_event()["body"]) | {"secret": "9c1e"}

    def breaking() -> Iterator[bytes]:
        yield sse_event({"token": "The"})
        raise RuntimeError(f"the prompt was {prompt}")

    stand_in.invoke("req-1", chat_event())
    Function(stand_in, breaking()).runtime().run(invocations=1)

    posted = only_post(stand_in)
    body = posted.body.partition(b"\0" * 8)[2]
    first, error, end = body.split(b"\n\n")
    assert first == b'data: {"token":"The"}'
    assert json.loads(error.removeprefix(b"data: "))["error"]["type"] == "server_error"
    assert end == b""
    assert posted.trailer("Lambda-Runtime-Function-Error-Type") == "RuntimeError"
    document = json.loads(base64.b64decode(posted.trailer("Lambda-Runtime-Function-Error-Body") or ""))
    assert document["errorType"] == "RuntimeError"
    assert "9c1e" not in document["errorMessage"]
    assert "9c1e" not in json_logs.text


def test_a_stream_handler_that_fails_before_its_first_byte_answers_500(stand_in: RuntimeApiStandIn) -> None:
    function = Function(stand_in)

    def failing(event: Any, context: Any) -> HttpStream:
        raise KeyError("messages")

    stand_in.invoke("req-1", chat_event())
    handlers = FunctionHandlers(function.lambda_handler, failing)
    StreamingRuntime(RuntimeApiClient(stand_in.address), handlers).run(invocations=1)

    posted = only_post(stand_in)
    prelude, _, body = posted.body.partition(b"\0" * 8)
    assert json.loads(prelude)["statusCode"] == 500
    assert json.loads(body)["error"]["message"] == "internal error; see the function's logs"
    assert posted.trailers == []


def test_http_api_and_other_events_are_answered_whole_by_lambda_handler(stand_in: RuntimeApiStandIn) -> None:
    function = Function(stand_in)
    stand_in.invoke("req-1", load_event("http_v2_infer.json"))
    stand_in.invoke("req-2", load_event("eventbridge_scheduled_warmup.json"))

    function.runtime().run(invocations=2)

    assert [name for name, _, _ in function.calls] == ["lambda_handler", "lambda_handler"]
    first, second = stand_in.posted
    assert first.path == RESPONSE
    assert first.header("Lambda-Runtime-Function-Response-Mode") is None
    assert json.loads(first.body) == {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": '{"ok":true}',
    }
    assert second.path == "/2018-06-01/runtime/invocation/req-2/response"


def test_a_failing_lambda_handler_is_reported_to_the_error_endpoint(stand_in: RuntimeApiStandIn) -> None:
    def failing(event: Any, context: Any) -> dict[str, Any]:
        raise ValueError(f"bad {event['body']}")

    function = Function(stand_in)
    stand_in.invoke("req-1", load_event("http_v2_infer.json"))
    handlers = FunctionHandlers(failing, function.stream_handler)
    StreamingRuntime(RuntimeApiClient(stand_in.address), handlers).run(invocations=1)

    posted = only_post(stand_in)
    assert posted.path == "/2018-06-01/runtime/invocation/req-1/error"
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "ValueError"
    document = json.loads(posted.body)
    assert document["errorType"] == "ValueError"
    assert "inputs" not in document["errorMessage"]


def test_an_event_that_is_not_json_is_an_unmarshal_error(stand_in: RuntimeApiStandIn) -> None:
    stand_in.invoke("req-1", b"{not json")
    Function(stand_in).runtime().run(invocations=1)

    posted = only_post(stand_in)
    assert posted.path == "/2018-06-01/runtime/invocation/req-1/error"
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "Runtime.UnmarshalError"


@pytest.mark.parametrize(
    ("module_text", "expected"),
    [
        (None, "No module named"),
        ("def lambda_handler(event, context):\n    return {}\n", "stream_handler"),
    ],
)
def test_a_function_that_cannot_load_is_an_init_error(
    stand_in: RuntimeApiStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module_text: str | None,
    expected: str,
) -> None:
    name = f"streaming_app_{tmp_path.name.replace('-', '_')}"
    if module_text is not None:
        (tmp_path / f"{name}.py").write_text(module_text)
    monkeypatch.syspath_prepend(str(tmp_path))

    status = main({"AWS_LAMBDA_RUNTIME_API": stand_in.address, "_HANDLER": f"{name}.lambda_handler"})

    assert status == 1
    posted = only_post(stand_in)
    assert posted.path == "/2018-06-01/runtime/init/error"
    assert posted.header("Lambda-Runtime-Function-Error-Type") == "Runtime.ImportModuleError"
    assert expected in json.loads(posted.body)["errorMessage"]


@pytest.mark.parametrize(
    ("event", "streamed"),
    [
        ("rest_v1_infer.json", True),
        ("http_v2_infer.json", False),
        ("function_url_infer.json", False),
        ("direct_invoke_infer.json", False),
        ("sqs_async_request.json", False),
    ],
)
def test_only_rest_api_events_are_streamed(event: str, streamed: bool) -> None:
    assert is_streamed(load_event(event)) is streamed


WRAPPER = ROOT / "functions" / "generate" / "streaming_bootstrap"
APP = """\
from maas.api.http_stream import HttpStream, sse_event


def lambda_handler(event, context):
    return {"statusCode": 200, "body": "whole"}


def stream_handler(event, context):
    return HttpStream(200, {"Content-Type": "text/event-stream"}, iter([sse_event({"from": "the wrapper"})]))
"""


def test_the_exec_wrapper_runs_our_loop_on_the_interpreter_lambda_hands_it(
    stand_in: RuntimeApiStandIn, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(APP)
    stand_in.invoke("req-1", chat_event())
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_RUNTIME_API": stand_in.address,
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "_HANDLER": "app.lambda_handler",
        # Where the layer's /opt/python would hold maas on Lambda.
        "PYTHONPATH": str(ROOT / "shared"),
    }
    # As Lambda calls it: the interpreter, then the managed runtime's own bootstrap (ignored).
    process = subprocess.Popen(
        ["/bin/sh", str(WRAPPER), sys.executable, "/var/runtime/bootstrap.py"],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        answered = stand_in.wait_for_posts(1)
    finally:
        process.kill()
        _, errors = process.communicate()
    assert answered, errors.decode(errors="replace")
    posted = only_post(stand_in)
    assert posted.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert posted.body.endswith(b'data: {"from":"the wrapper"}\n\n')


def test_the_exec_wrapper_is_executable() -> None:
    assert os.access(WRAPPER, os.X_OK)
