"""The Lambda runtime loop of a function that streams (the generate function), in place of the managed one.

Lambda's managed Python runtime posts a handler's whole result; only a runtime that speaks the Runtime
API's streaming mode can stream (decision 0020). functions/generate/streaming_bootstrap, the function's
AWS_LAMBDA_EXEC_WRAPPER, starts this module on the managed runtime's own interpreter instead of its loop:

    python3 -m maas.apps.streaming_runtime        (the function's _HANDLER names app.lambda_handler)

Each invocation goes where its event says it came from:

    a REST API proxy event (payload 1.0)    -> app.stream_handler -> streamed (prelude, then chunks)
    anything else (an HTTP API 2.0 request,
    a schedule, a direct invoke)            -> app.lambda_handler -> posted whole, as the managed runtime does

With SnapStart (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start) init ends as the managed loop ends it: the
before-snapshot hooks, GET /runtime/restore/next while Lambda snapshots, then in each restored copy the
after-restore hooks (maas.apps.snapstart), before the first /invocation/next.

The template's streaming REST API is the only REST API that invokes the function, and it invokes it with
InvokeWithResponseStream. A handler that fails is logged by type and traceback, never by its message (it
can quote the payload): a buffered one is reported to /error as the managed runtime would; a streaming
one answers 500 before its first byte, or ends its stream with an SSE error event and the error trailers.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from maas.api.http_stream import (
    INTERNAL_ERROR,
    SERVER_ERROR_TYPE,
    STREAM_HANDLER,
    ChunksUntilError,
    HttpStream,
    error_document,
)
from maas.apps.runtime_api import FunctionError, Invocation, RuntimeApiClient
from maas.apps.snapstart import (
    ENV_INITIALIZATION_TYPE,
    SNAP_START,
    run_after_restore,
    run_before_snapshot,
)
from maas.observability import logger

ENV_RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"
ENV_HANDLER = "_HANDLER"
ENV_TRACE_ID = "_X_AMZN_TRACE_ID"
# The error types and exit statuses the managed Python runtime (awslambdaric) uses for failing hooks.
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"
BEFORE_SNAPSHOT_EXIT = 64
AFTER_RESTORE_EXIT = 65
Handler = Callable[[Any, Any], Any]


@dataclass(slots=True)
class RuntimeContext:
    """The Lambda context object handlers and Powertools read, as the managed runtime builds it."""

    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int
    function_name: str
    function_version: str
    memory_limit_in_mb: int
    log_group_name: str
    log_stream_name: str
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass(frozen=True, slots=True)
class FunctionHandlers:
    """The function module's two entry points: the whole answer and the streamed one."""

    lambda_handler: Handler
    stream_handler: Handler


def load_handlers(handler: str) -> FunctionHandlers:
    """`module.function` from _HANDLER, and `stream_handler` beside it in the same module."""
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    found = {name: getattr(module, name, None) for name in (function_name, STREAM_HANDLER)}
    missing = [name for name, value in found.items() if not callable(value)]
    if missing:
        raise AttributeError(f"{module_name}: expected {' and '.join(missing)} to be defined as functions")
    return FunctionHandlers(found[function_name], found[STREAM_HANDLER])  # type: ignore[arg-type]


def is_streamed(event: Any) -> bool:
    """A REST API proxy event: httpMethod and no payload version (HTTP API's events carry one)."""
    return isinstance(event, Mapping) and "httpMethod" in event and "version" not in event


def function_error(
    exc: BaseException, error_type: str | None = None, *, with_message: bool = False
) -> FunctionError:
    """Lambda's error document for `exc`; its message only where it cannot hold payload (init errors)."""
    name = error_type or type(exc).__name__
    message = str(exc) if with_message else f"{type(exc).__name__}; see the function's logs"
    return FunctionError(name, message, [line.rstrip() for line in traceback.format_tb(exc.__traceback__)])


class StreamingRuntime:
    """Takes invocations from the Runtime API and answers each, whole or streamed, until stopped."""

    def __init__(
        self, client: RuntimeApiClient, handlers: FunctionHandlers, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.client = client
        self.handlers = handlers
        self._environ = environ

    def run(self, invocations: int | None = None) -> None:
        """Serve for ever, or `invocations` times (tests)."""
        served = 0
        while invocations is None or served < invocations:
            self.handle(self.client.next_invocation())
            served += 1

    def handle(self, invocation: Invocation) -> None:
        # X-Ray's SDK and Powertools read the trace id from the environment, as the managed runtime sets it.
        if invocation.trace_id:
            os.environ[ENV_TRACE_ID] = invocation.trace_id
        else:
            os.environ.pop(ENV_TRACE_ID, None)
        try:
            event = json.loads(invocation.event)
        except ValueError as exc:
            self.client.post_error(invocation.request_id, function_error(exc, "Runtime.UnmarshalError"))
            return
        context = self._context(invocation)
        if is_streamed(event):
            self._stream(invocation.request_id, event, context)
        else:
            self._answer_whole(invocation.request_id, event, context)

    def _answer_whole(self, request_id: str, event: Any, context: RuntimeContext) -> None:
        try:
            body = json.dumps(self.handlers.lambda_handler(event, context)).encode()
        except Exception as exc:
            _log_failure("the handler failed", exc)
            self.client.post_error(request_id, function_error(exc))
            return
        self.client.post_response(request_id, body)

    def _stream(self, request_id: str, event: Any, context: RuntimeContext) -> None:
        try:
            stream = self.handlers.stream_handler(event, context)
            if not isinstance(stream, HttpStream):
                raise TypeError(f"{STREAM_HANDLER} must return an HttpStream, got {type(stream).__name__}")
            if not 200 <= stream.status <= 599:
                raise ValueError(f"HttpStream.status: expected 200-599, got {stream.status}")
        except Exception as exc:
            _log_failure("the stream handler failed before its first byte", exc)
            document = json.dumps(error_document(INTERNAL_ERROR, SERVER_ERROR_TYPE)).encode()
            self.client.stream_response(request_id, 500, {"Content-Type": "application/json"}, [document])
            return
        chunks = ChunksUntilError(stream.chunks)
        try:
            self.client.stream_response(
                request_id,
                stream.status,
                stream.headers,
                chunks,
                failure=lambda: None if chunks.error is None else function_error(chunks.error),
            )
        except OSError as exc:
            # The Runtime API went away mid-stream (the invocation timed out): the next /next starts afresh.
            _log_failure("the Runtime API connection broke mid-stream", exc)
        finally:
            chunks.close()

    def _context(self, invocation: Invocation) -> RuntimeContext:
        env = self._environ
        return RuntimeContext(
            aws_request_id=invocation.request_id,
            invoked_function_arn=invocation.invoked_function_arn,
            deadline_ms=invocation.deadline_ms,
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            memory_limit_in_mb=int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0),
            log_group_name=env.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=env.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
            identity=_json_or_none(invocation.cognito_identity),
            client_context=_json_or_none(invocation.client_context),
        )


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _log_failure(message: str, exc: BaseException) -> None:
    logger.error(
        message,
        extra={
            "error_type": type(exc).__name__,
            "traceback": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )


def main(environ: Mapping[str, str] = os.environ) -> int:
    """Load the handlers (an init error is reported to Lambda, which then retries the init), then serve."""
    client = RuntimeApiClient(environ[ENV_RUNTIME_API])
    try:
        handlers = load_handlers(environ[ENV_HANDLER])
    except Exception as exc:
        _log_failure("the function could not be loaded", exc)
        client.post_init_error(function_error(exc, "Runtime.ImportModuleError", with_message=True))
        return 1
    if environ.get(ENV_INITIALIZATION_TYPE) == SNAP_START:
        failed = snapshot_and_restore(client)
        if failed is not None:
            return failed
    StreamingRuntime(client, handlers, environ).run()
    return 0


def snapshot_and_restore(client: RuntimeApiClient) -> int | None:
    """SnapStart's part of init, as the managed runtime does it: the before-snapshot hooks, the wait for
    the snapshot (/restore/next), then in each restored copy the after-restore hooks. The exit status of
    a failure, reported to Lambda first; None when the copy may serve."""
    try:
        run_before_snapshot()
        client.restore_next()
    except Exception as exc:
        _log_failure("a before-snapshot hook failed", exc)
        client.post_init_error(function_error(exc, BEFORE_SNAPSHOT_ERROR, with_message=True))
        return BEFORE_SNAPSHOT_EXIT
    try:
        run_after_restore()
    except Exception as exc:
        _log_failure("an after-restore hook failed", exc)
        client.post_restore_error(function_error(exc, AFTER_RESTORE_ERROR, with_message=True))
        return AFTER_RESTORE_EXIT
    return None


if __name__ == "__main__":
    sys.exit(main())
