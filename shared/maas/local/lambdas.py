"""The emulated Lambda runtime: one execution environment per function, handlers imported from their files.

Decisions worth knowing:

- One execution environment per function (`LocalFunction`): invocations of one function are
  serialized, as in a single warm Lambda container (Powertools resolvers keep the current event on
  the app object). The local stack shares one `LocalFunctions` between the gateway and its SQS
  pollers, so a function invoked by HTTP and by a queue is one environment with one model cache.
- Where Lambda would scale a function out (a Step Functions Map invoking it N at a time),
  `FunctionEnvironments` hands each invoke a free environment of the function, making more (up to a
  limit) when all are busy. Each new one imports its handler module afresh, as another container
  would; shared packages (maas itself) stay one import per process.
- Each function's template environment (resolved by an `IntrinsicResolver`) is applied to
  `os.environ` before any handler is imported, and restored afterwards, by whoever owns the
  `LocalFunctions` (the gateway, when it builds its own). The process has one environment, so
  functions that disagree on a variable get the first function's value and a warning.
- Handlers are imported from their file (CodeUri + Handler) under a unique module name, once, on
  the first invocation (a streaming route's `stream_handler` comes from the same module), with the code
  folder on sys.path while the module initialises; modules from that folder are private to the
  function, as they would be in its own container.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from maas.api.http_stream import STREAM_HANDLER, HttpStream
from maas.local.cloudformation import IntrinsicResolver
from maas.local.process_environment import EnvironmentPatch
from maas.local.sam import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_SECONDS, FunctionSpec
from maas.local.sigv4 import LOCAL_ACCOUNT_ID

logger = logging.getLogger(__name__)

LambdaHandler = Callable[[dict[str, Any], Any], Any]
# Read by Lambda's runtime bootstrap before any Python runs (the generate function's exec wrapper): they
# mean nothing to an in-process function and would only leak into processes the stack starts.
LAMBDA_STARTUP_VARIABLES = frozenset({"AWS_LAMBDA_EXEC_WRAPPER"})
ENVIRONMENT_WAIT_SECONDS = 0.05


def local_function_arn(logical_id: str, region: str, account_id: str, qualifier: str | None = None) -> str:
    """The ARN of a template function locally, where its name is its logical id (an alias: `qualifier`)."""
    arn = f"arn:aws:lambda:{region}:{account_id}:function:{logical_id}"
    return f"{arn}:{qualifier}" if qualifier else arn


def function_name_of(reference: str) -> str:
    """The function's name in any form Lambda's Invoke takes: a name, `name:qualifier`, a full or a partial
    (`account:function:name`) ARN, each maybe qualified."""
    parts = reference.split(":")
    if reference.startswith("arn:") and len(parts) >= 7:
        return parts[6]
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]
    return parts[0]


@dataclass(slots=True)
class LocalLambdaContext:
    """The attributes of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass
class LocalFunction:
    """One function's execution environment: its handler, imported on first use, one invoke at a time."""

    spec: FunctionSpec
    root: Path
    memory_mb: int
    timeout_seconds: float
    region: str = "us-east-1"
    account_id: str = LOCAL_ACCOUNT_ID
    _module: ModuleType | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            return self._invoke_held(event)

    def try_claim(self) -> bool:
        """Take the environment if it is free (then `invoke_claimed`, then `release`); never waits."""
        return self._lock.acquire(blocking=False)

    def invoke_claimed(self, event: dict[str, Any]) -> Any:
        """`invoke` in an environment this thread claimed with `try_claim`."""
        return self._invoke_held(event)

    def release(self) -> None:
        self._lock.release()

    def _invoke_held(self, event: dict[str, Any]) -> Any:
        handler = self._handler(self.spec.handler_function)
        started = time.monotonic()
        try:
            return handler(event, self._context())
        finally:
            self._warn_if_over_timeout(started)

    def invoke_streaming(self, event: dict[str, Any]) -> HttpStream:
        """The module's `stream_handler(event, context)` answer, in this same execution environment.

        The environment stays busy until the answer's chunks are exhausted or closed, as a Lambda
        container is until its streamed response ends; the caller must do one or the other."""
        self._lock.acquire()
        try:
            handler = self._handler(STREAM_HANDLER)
            started = time.monotonic()
            stream = handler(event, self._context())
            if not isinstance(stream, HttpStream):
                raise TypeError(
                    f"{self.spec.logical_id}: {STREAM_HANDLER} must return an HttpStream, "
                    f"got {type(stream).__name__}"
                )
        except BaseException:
            self._lock.release()
            raise
        release = _ReleaseOnce(self._lock, lambda: self._warn_if_over_timeout(started))
        return HttpStream(stream.status, dict(stream.headers), _ChunksHoldingLock(stream.chunks, release))

    def _context(self) -> LocalLambdaContext:
        return LocalLambdaContext(
            function_name=self.spec.logical_id,
            memory_limit_in_mb=self.memory_mb,
            invoked_function_arn=local_function_arn(self.spec.logical_id, self.region, self.account_id),
            aws_request_id=str(uuid.uuid4()),
            deadline_ms=int((time.time() + self.timeout_seconds) * 1000),
            log_group_name=f"/aws/lambda/{self.spec.logical_id}",
        )

    def _warn_if_over_timeout(self, started: float) -> None:
        elapsed = time.monotonic() - started
        if elapsed > self.timeout_seconds:
            logger.warning(
                "%s took %.1fs, over its %ss Timeout: Lambda would have stopped it",
                self.spec.logical_id,
                elapsed,
                self.timeout_seconds,
            )

    def _handler(self, name: str) -> LambdaHandler:
        if self._module is None:
            self._module = _import_file(self.spec.handler_file(self.root), self.spec.logical_id)
        handler = getattr(self._module, name, None)
        if not callable(handler):
            raise ImportError(
                f"{self.spec.logical_id}: handler '{self.spec.handler_module}.{name}' is not a function"
            )
        return cast(LambdaHandler, handler)


class FunctionEnvironments:
    """Up to `limit` execution environments of one function, as Lambda scales it out under concurrent
    invokes: an invoke takes a free one; when all are busy and fewer than `limit` exist, a new one
    (imported afresh on its first invoke); otherwise it waits for one to be free.

    The first is `first`, which the gateway and SQS pollers may be using too."""

    def __init__(self, first: LocalFunction, *, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"{first.spec.logical_id}: expected an environment limit >= 1, got {limit}")
        self.limit = limit
        self._environments = [first]
        self._freed = threading.Condition()

    @property
    def logical_id(self) -> str:
        return self._environments[0].spec.logical_id

    @property
    def size(self) -> int:
        """How many environments exist now."""
        with self._freed:
            return len(self._environments)

    def invoke(self, event: dict[str, Any]) -> Any:
        environment = self._claim()
        try:
            return environment.invoke_claimed(event)
        finally:
            environment.release()
            with self._freed:
                self._freed.notify()

    def _claim(self) -> LocalFunction:
        with self._freed:
            while True:
                for environment in self._environments:
                    if environment.try_claim():
                        return environment
                if len(self._environments) < self.limit:
                    # A new container: its own handler module and lock, the same settings.
                    environment = dataclasses.replace(self._environments[0])
                    environment.try_claim()
                    self._environments.append(environment)
                    logger.debug("%s: execution environment %d", self.logical_id, len(self._environments))
                    return environment
                # The gateway and pollers free the first one without notifying: look again soon.
                self._freed.wait(ENVIRONMENT_WAIT_SECONDS)


class _ReleaseOnce:
    """Frees the execution environment once, however the stream ends (exhausted, failed or closed)."""

    def __init__(self, lock: threading.Lock, on_release: Callable[[], None]) -> None:
        self._lock = lock
        self._on_release = on_release
        self._released = False
        self._guard = threading.Lock()

    def __call__(self) -> None:
        with self._guard:
            if self._released:
                return
            self._released = True
        self._lock.release()
        self._on_release()


class _ChunksHoldingLock:
    """A streaming answer's chunks, holding the environment until they end or are closed. A class, not a
    generator: closing a generator that never started would skip its `finally` and keep the lock."""

    def __init__(self, chunks: Iterator[bytes], release: _ReleaseOnce) -> None:
        self._chunks = chunks
        self._release = release

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self._release()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if callable(close):
                close()
        finally:
            self._release()


class LocalFunctions:
    """The execution environments of a set of functions, one per function, built once and shared.

    It also owns the process environment the functions need: `apply_environment()` merges every
    function's resolved Environment.Variables into `os.environ` (functions with no HTTP route too)
    and `restore_environment()` puts each variable back as it was.
    """

    def __init__(
        self,
        specs: Iterable[FunctionSpec],
        *,
        root: Path,
        resolver: IntrinsicResolver,
        account_id: str = LOCAL_ACCOUNT_ID,
        environment_overrides: Mapping[str, str] | None = None,
    ) -> None:
        """`environment_overrides`: local values that beat every function's template value (the local
        store's bucket, whatever name the template gives the deployed one)."""
        self._resolver = resolver
        self._environment_overrides = dict(environment_overrides or {})
        self._functions: dict[str, LocalFunction] = {}
        for spec in specs:
            if spec.logical_id not in self._functions:
                self._functions[spec.logical_id] = LocalFunction(
                    spec=spec,
                    root=root,
                    memory_mb=int(resolver.resolve_number(spec.memory_size, DEFAULT_MEMORY_MB)),
                    timeout_seconds=resolver.resolve_number(spec.timeout, DEFAULT_TIMEOUT_SECONDS),
                    region=resolver.region,
                    account_id=account_id,
                )
        self._environment = EnvironmentPatch()

    def __getitem__(self, logical_id: str) -> LocalFunction:
        return self._functions[logical_id]

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self._functions

    def __iter__(self) -> Iterator[LocalFunction]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def apply_environment(self) -> None:
        merged: dict[str, tuple[str, str]] = {}
        for function in self._functions.values():
            for name, value in self._resolver.resolve_environment(
                function.spec.environment, owner=function.spec.logical_id
            ).items():
                if name in LAMBDA_STARTUP_VARIABLES:
                    continue
                if name in merged and merged[name][1] != value:
                    logger.warning(
                        "%s=%r from %s kept; %s wants %r (one process, one environment)",
                        name,
                        merged[name][1],
                        merged[name][0],
                        function.spec.logical_id,
                        value,
                    )
                    continue
                merged[name] = (function.spec.logical_id, value)
        for name, value in self._environment_overrides.items():
            merged[name] = ("the local stack", value)
        for name, (_, value) in merged.items():
            self._environment.set(name, value)

    def restore_environment(self) -> None:
        self._environment.restore()


# sys.path and sys.modules are process-wide: two functions initialising at once (an HTTP request and
# an SQS poller) would each see the other's folder and could drop the other's sibling modules.
_HANDLER_IMPORT_LOCK = threading.Lock()


def _import_file(path: Path, logical_id: str) -> ModuleType:
    """Import a handler file as Lambda does, with its folder importable while it initialises.

    Sibling modules it imported are then dropped from sys.modules (the handler keeps its references),
    so two functions that each ship a `helpers.py` never share one.
    """
    with _HANDLER_IMPORT_LOCK:
        return _import_file_unlocked(path, logical_id)


def _import_file_unlocked(path: Path, logical_id: str) -> ModuleType:
    name = f"maas_local_function_{logical_id.lower()}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{logical_id}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    code_dir = path.parent.resolve()
    before = set(sys.modules)
    sys.modules[name] = module
    sys.path.insert(0, str(code_dir))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(code_dir))
        for added in set(sys.modules) - before - {name}:
            if _is_sibling(sys.modules.get(added), code_dir):
                sys.modules.pop(added, None)
    return module


def _is_sibling(module: object, code_dir: Path) -> bool:
    """A module found through the function's folder: <folder>/<top>.py or inside <folder>/<top>/."""
    origin = getattr(module, "__file__", None)
    if not isinstance(module, ModuleType) or origin is None:
        return False
    top = module.__name__.partition(".")[0]
    return Path(origin).resolve().is_relative_to(code_dir) and (
        (code_dir / f"{top}.py").is_file() or (code_dir / top / "__init__.py").is_file()
    )
