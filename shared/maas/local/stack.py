"""The whole system on a laptop: an object store, queues, a registry, and template.yaml's functions.

`make serve` runs `maas.cli.serve`, which hands the stack a seeder that trains the example models (the
stack itself never imports training code). Tests use `LocalStack` directly on an ephemeral port. The
object store is the environment's or an embedded moto server (see maas.local.object_store).

Events run only against the embedded store: there the stack creates template.yaml's queues, gives
the model bucket its notifications and polls each function's SQS events (see maas.local.queues), and
creates the template's state machines in moto and runs their executions (see
maas.local.state_machines). Another store's queues, notifications and state machines belong to
whoever deployed it, so the stack leaves them alone and serves HTTP only; the functions then get an
empty MAAS_JOB_STATE_MACHINE_ARN, so every batch job runs in one invocation. Schedules are not
emulated.

Explicit beats template: the job-sharding variables MAAS_JOB_SHARD_BYTES, MAAS_TEXT_JOB_SHARD_BYTES,
MAAS_PROMPT_JOB_SHARD_BYTES and MAAS_JOB_SHARD_CONCURRENCY, when set in the shell that starts the stack,
beat the template's values for the local functions (a small shard size makes a small job run sharded).
The Map's concurrency is capped locally at `shard_workers` (MAAS_LOCAL_SHARD_WORKERS for `make serve`, 4 by
default), and `retry_interval_scale` (MAAS_LOCAL_RETRY_INTERVAL_SCALE) multiplies every Retry wait.

Template parameters take their defaults unless overridden (`parameters=`, or for `make serve` the
MAAS_LOCAL_PARAMETERS variable, e.g. "DataPlaneAuth=AWS_IAM"): they decide Conditions, and so which
resources exist and what each route's authorization is. The gateway enforces it as API Gateway
would; AWS_IAM routes accept SigV4 signatures by the keys of this process (testing/testing with the
embedded store).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import boto3

from maas.aws_clients import s3_client
from maas.config import (
    ENV_BUCKET,
    ENV_JOB_SHARD_BYTES,
    ENV_JOB_SHARD_CONCURRENCY,
    ENV_JOB_STATE_MACHINE_ARN,
    ENV_PROMPT_JOB_SHARD_BYTES,
    ENV_TEXT_JOB_SHARD_BYTES,
    Settings,
)
from maas.errors import ConfigurationError
from maas.local.cloudformation import IntrinsicResolver, TemplateError
from maas.local.data_folder import (
    ENV_DATA_DIR,
    LOCK_WAIT_SECONDS,
    DataFolderLock,
    StackDescriptor,
    remove_descriptor,
    running_stack,
    write_descriptor,
)
from maas.local.gateway import LocalGateway
from maas.local.http_server import READ_TIMEOUT_SECONDS
from maas.local.lambdas import FunctionEnvironments, LocalFunctions, local_function_arn
from maas.local.object_store import (
    EMBEDDED_CREDENTIALS,
    EmbeddedStore,
    StoreChoice,
    choose_store,
    ensure_bucket,
    process_region,
    require_bucket,
)
from maas.local.ports import DataFolderInUse, choose_store_port, gateway_port_in_use
from maas.local.process_environment import EnvironmentPatch
from maas.local.queues import (
    LocalQueue,
    SqsPoller,
    apply_bucket_notifications,
    create_queues,
    local_sqs_client,
    visibility_seconds,
)
from maas.local.sam import BUCKET_TYPE, DEFAULT_SQS_BATCH_SIZE, SamTemplate
from maas.local.sigv4 import LOCAL_ACCOUNT_ID
from maas.local.stack_banner import SigningExample, curl_example, stack_banner
from maas.local.state_machines import (
    LocalLambdaInvoker,
    LocalStateMachine,
    StateMachineRunner,
    local_state_machine,
    retry_interval_scale_from_environment,
    shard_workers_from_environment,
    state_machine_references,
)
from maas.local.template_reader import ALIAS_REFERENCE, TEMPLATE_FILE, load_template
from maas.registry import Manifest, ModelRegistry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")

# `make serve`'s template parameter overrides, as `sam deploy --parameter-overrides` takes them.
ENV_LOCAL_PARAMETERS = "MAAS_LOCAL_PARAMETERS"
# `make serve`'s read timeout: seconds a whole request may take to arrive (maas.local.http_server).
ENV_LOCAL_READ_TIMEOUT = "MAAS_LOCAL_READ_TIMEOUT_SECONDS"
MODEL_BUCKET_RESOURCE = "ModelBucket"
# Settings the shell's value of beats the template's for the local functions (module docstring).
SHELL_JOB_SETTINGS = (
    ENV_JOB_SHARD_BYTES,
    ENV_TEXT_JOB_SHARD_BYTES,
    ENV_PROMPT_JOB_SHARD_BYTES,
    ENV_JOB_SHARD_CONCURRENCY,
)
SEED_MODELS: tuple[str, ...] = ("seed-mlp",)
# Publishes what the stack should start with into its registry (after the gateway binds, before it
# serves), returning what it published: the CLI passes one that trains the example models.
Seeder = Callable[[ModelRegistry], Sequence[Manifest]]
DEFAULT_PORT = 3000


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder holding template.yaml, from `start` (the working directory) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / TEMPLATE_FILE).is_file():
            return folder
    source_root = Path(__file__).resolve().parents[3]
    if (source_root / TEMPLATE_FILE).is_file():
        return source_root
    raise ConfigurationError(
        f"{TEMPLATE_FILE}: expected it in {here} or a parent folder; run from the project"
    )


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """Overrides written as `sam deploy` takes them, Name=Value separated by spaces (shell quoting
    allowed), as a mapping; a list parameter's value keeps its commas (JwtAudience=a,b)."""
    overrides: dict[str, str] = {}
    for item in shlex.split(text):
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise TemplateError(f"{ENV_LOCAL_PARAMETERS}: expected Name=Value items, got {item!r}")
        overrides[name] = value
    return overrides


class LocalStack:
    """Store, queues, seed models, gateway and SQS pollers, started together and stopped in reverse.

    Non-blocking: `start()` returns once the gateway listens and the pollers run, so tests drive it
    over real HTTP, S3 and SQS. Environment variables it sets are restored by `close()`.

    `queue_visibility_seconds` is local only: it replaces every queue's VisibilityTimeout (rounded up
    to whole seconds). The template's values (minutes, six times the function's Timeout, as Lambda
    advises) are right in AWS but make a local retry or a redrive to the dead-letter queue take that
    long; tests use 1 second. Only the embedded store has queues, so it changes nothing elsewhere.

    `read_timeout_seconds`: how long the gateway waits for a whole request (maas.local.http_server's
    READ_TIMEOUT_SECONDS by default; `make serve` reads MAAS_LOCAL_READ_TIMEOUT_SECONDS).

    `data_dir` keeps the embedded store's state there across restarts (maas.local.store_state), on a port
    that stays the same (maas.local.ports; `store_port` overrides it), and holds the descriptor by which
    every `maas` command finds the running stack (maas.local.data_folder). Without one the store lives in
    memory on a free port, as tests want.

    `parameters` overrides template.yaml's parameter defaults, as `sam deploy --parameter-overrides`
    does (e.g. {"DataPlaneAuth": "AWS_IAM"}); a name the template does not declare, or a value its
    AllowedValues or AllowedPattern refuses, fails here.

    `shard_workers` caps a state machine Map's concurrency, and so the execution environments of a
    function it invokes (default: MAAS_LOCAL_SHARD_WORKERS, else 4); `retry_interval_scale` multiplies
    every Retry wait of a state machine (default: MAAS_LOCAL_RETRY_INTERVAL_SCALE, else 1; tests use
    ~0.001). Only the embedded store runs state machines, so elsewhere they change nothing.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        root: Path | None = None,
        bucket: str | None = None,
        embedded: bool = False,
        seeder: Seeder | None = None,
        parameters: Mapping[str, str] | None = None,
        queue_visibility_seconds: float | None = None,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
        data_dir: Path | None = None,
        store_port: int | None = None,
        shard_workers: int | None = None,
        retry_interval_scale: float | None = None,
    ) -> None:
        self.host = host
        self.read_timeout_seconds = read_timeout_seconds
        self.port = port
        self.root = root or find_project_root()
        self.seeder = seeder
        self.parameters = dict(parameters or {})
        if queue_visibility_seconds is not None:
            visibility_seconds(queue_visibility_seconds)  # out of SQS's range fails here, not at start()
        self.queue_visibility_seconds = queue_visibility_seconds
        self._bucket = bucket
        self._embedded = embedded
        self.data_dir = data_dir
        self._store_port = store_port
        self.shard_workers = (
            shard_workers if shard_workers is not None else shard_workers_from_environment(os.environ)
        )
        if self.shard_workers < 1:
            raise ConfigurationError(f"shard workers: expected >= 1, got {self.shard_workers}")
        self.retry_interval_scale = (
            retry_interval_scale
            if retry_interval_scale is not None
            else retry_interval_scale_from_environment(os.environ)
        )
        if not self.retry_interval_scale >= 0:
            raise ConfigurationError(f"retry interval scale: expected >= 0, got {self.retry_interval_scale}")
        self._state_machines: list[LocalStateMachine] = []
        self._runner: StateMachineRunner | None = None
        self._folder_lock: DataFolderLock | None = None
        self._env = EnvironmentPatch()
        self._embedded_store: EmbeddedStore | None = None
        self._gateway: LocalGateway | None = None
        self._functions: LocalFunctions | None = None
        self._queues: dict[str, LocalQueue] = {}
        self._pollers: list[SqsPoller] = []
        self._store: StoreChoice | None = None
        self._settings: Settings | None = None
        self._registry: ModelRegistry | None = None
        self.template: SamTemplate = load_template(self.root / TEMPLATE_FILE, self.parameters)
        self.seeded: list[Manifest] = []

    def start(self) -> LocalStack:
        if self.data_dir is not None:
            self._folder_lock = claim_data_folder(self.data_dir)
        try:
            store = self._start_store()
            settings = dataclasses.replace(Settings.from_env(), bucket=store.bucket)
            s3 = s3_client(settings.endpoint_url)
            bucket_names = self._bucket_names(store.bucket)
            if store.kind == "aws":
                require_bucket(s3, store.bucket)
            else:
                for name in bucket_names.values():
                    ensure_bucket(s3, name)
            registry = ModelRegistry.from_settings(settings, s3)
            self._store, self._settings, self._registry = store, settings, registry
            region = process_region()
            sqs = None
            if store.kind == "embedded":
                sqs = local_sqs_client(store.endpoint_url, region)
                self._create_queues(sqs, s3, bucket_names, region)
            resolver = self._resolver(bucket_names, region)
            functions = LocalFunctions(
                self.template.functions.values(),
                root=self.root,
                resolver=resolver,
                environment_overrides=self._environment_overrides(store),
            )
            functions.apply_environment()  # before any handler is imported, routed or not
            self._functions = functions
            runner = None
            if sqs is not None:
                runner = self._state_machine_runner(store, s3, functions, resolver)  # refused now, not later
            self._gateway = LocalGateway(
                self.template.routes,
                root=self.root,
                host=self.host,
                port=self.port,
                functions=functions,
                region=region,
                read_timeout_seconds=self.read_timeout_seconds,
                console=True,
            )
            try:
                self._gateway.bind()  # a busy port fails now, not after training; requests wait for start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise gateway_port_in_use(self.host, self.port) from None
            self.seeded = list(self.seeder(registry)) if self.seeder else []
            self._gateway.start()
            if self.data_dir is not None:
                write_descriptor(self.data_dir, self._descriptor(store, region))
            if runner is not None:
                self._runner = runner.start()  # before the pollers, whose functions start executions
            if sqs is not None:
                self._start_pollers(sqs, functions, resolver)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.data_dir is not None:
            remove_descriptor(self.data_dir)
        pollers, self._pollers = self._pollers, []
        runner, self._runner = self._runner, None
        for poller in pollers:
            poller.request_stop()  # all at once, so their long polls end together
        if runner is not None:
            runner.request_stop()
        for poller in pollers:
            poller.stop()
        if runner is not None:
            runner.stop()
        self._state_machines = []
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()
        functions, self._functions = self._functions, None
        if functions is not None:
            functions.restore_environment()
        self._queues = {}
        embedded_store, self._embedded_store = self._embedded_store, None
        if embedded_store is not None:
            embedded_store.stop()
        self._env.restore()
        folder_lock, self._folder_lock = self._folder_lock, None
        if folder_lock is not None:
            folder_lock.release()  # last: the store's final save is done

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The gateway's base URL, e.g. http://127.0.0.1:3000."""
        return _started(self._gateway).url

    @property
    def store(self) -> StoreChoice:
        return _started(self._store)

    @property
    def settings(self) -> Settings:
        return _started(self._settings)

    @property
    def registry(self) -> ModelRegistry:
        return _started(self._registry)

    @property
    def events_emulated(self) -> bool:
        """Whether queues, notifications and SQS pollers run: on the embedded store only."""
        return self.store.kind == "embedded"

    @property
    def queue_urls(self) -> Mapping[str, str]:
        """Each template queue's local URL by logical id; empty when events are not emulated."""
        return {rid: queue.url for rid, queue in self._queues.items()}

    def queue_url(self, logical_id: str) -> str:
        """The local URL of template queue `logical_id` (what `!Ref <Queue>` resolves to)."""
        try:
            return self._queues[logical_id].url
        except KeyError:
            known = ", ".join(self._queues) or "none: events are emulated on the embedded store only"
            raise KeyError(f"queue {logical_id!r}: expected one of the template's queues ({known})") from None

    @property
    def state_machines(self) -> Mapping[str, LocalStateMachine]:
        """The template's state machines the stack runs, by logical id; empty off the embedded store."""
        return {machine.logical_id: machine for machine in self._state_machines}

    def state_machine_arn(self, logical_id: str) -> str:
        """The local ARN of template state machine `logical_id`."""
        try:
            return self.state_machines[logical_id].arn
        except KeyError:
            known = ", ".join(self.state_machines) or "none: state machines run on the embedded store only"
            raise KeyError(
                f"state machine {logical_id!r}: expected one of the template's ({known})"
            ) from None

    def curl_example(self, model: str = SEED_MODELS[0]) -> str:
        """An infer call as curl, signed or with a bearer token when the route requires one."""
        return curl_example(self.url, self.template.routes, model, self._signing_example())

    def banner(self) -> str:
        return stack_banner(
            url=self.url,
            template=self.template,
            parameters=self.parameters,
            store=self.store,
            prefix=self.settings.prefix,
            model=SEED_MODELS[0],
            pollers=self._pollers,
            queue_urls=self.queue_urls,
            signing_example=self._signing_example(),
            kept_in=self.data_dir,
            state_machines=[machine.name for machine in self._state_machines],
            shard_workers=self.shard_workers,
        )

    def _signing_example(self) -> SigningExample | None:
        return self._gateway.signing_example if self._gateway is not None else None

    def _start_store(self) -> StoreChoice:
        store = choose_store(os.environ, bucket=self._bucket, embedded=self._embedded)
        if store.kind != "embedded":
            return store
        if self.data_dir is None:
            port = self._store_port or 0
        else:
            port = choose_store_port(self.data_dir, self._store_port, self.port, self.host)
        self._embedded_store = EmbeddedStore(self._env, data_dir=self.data_dir, port=port)
        return dataclasses.replace(store, endpoint_url=self._embedded_store.start())

    def _descriptor(self, store: StoreChoice, region: str) -> StackDescriptor:
        assert self.data_dir is not None
        return StackDescriptor(
            url=self.url,
            endpoint_url=store.endpoint_url or "",
            bucket=store.bucket,
            region=region,
            pid=os.getpid(),
            data_dir=str(self.data_dir),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            credentials=dict(EMBEDDED_CREDENTIALS) if store.kind == "embedded" else {},
        )

    def _create_queues(self, sqs: Any, s3: S3Client, bucket_names: Mapping[str, str], region: str) -> None:
        parameters = IntrinsicResolver.for_template(self.template, self.parameters, region=region)
        self._queues = create_queues(
            sqs,
            self.template.queues_in_creation_order(),
            parameters,
            visibility_timeout_seconds=self.queue_visibility_seconds,
        )
        apply_bucket_notifications(
            s3, self.template.queue_notifications, bucket_names=bucket_names, queues=self._queues
        )

    def _start_pollers(self, sqs: Any, functions: LocalFunctions, resolver: IntrinsicResolver) -> None:
        for source in self.template.sqs_event_sources:
            if resolver.resolve(source.enabled).lower() != "true":
                logger.info("%s.%s: disabled in the template", source.function_id, source.event_id)
                continue
            poller = SqsPoller(
                source,
                functions[source.function_id],
                self._queues[source.queue_id],
                sqs,
                batch_size=int(resolver.resolve_number(source.batch_size, DEFAULT_SQS_BATCH_SIZE)),
                batching_window_seconds=resolver.resolve_number(source.maximum_batching_window_seconds, 0),
            )
            self._pollers.append(poller)
            poller.start()

    def _resolver(self, bucket_names: Mapping[str, str], region: str) -> IntrinsicResolver:
        """What the template's intrinsics resolve to on this stack: buckets, queues, function aliases and
        state machines (their ARNs are known before they are created: they are built from their names)."""
        parameters = IntrinsicResolver.for_template(self.template, self.parameters, region=region)
        resources = {**bucket_names, **{rid: queue.url for rid, queue in self._queues.items()}}
        for rid, spec in self.template.functions.items():
            if spec.auto_publish_alias is not None:
                alias = parameters.resolve(spec.auto_publish_alias)
                resources[f"{rid}{ALIAS_REFERENCE}"] = local_function_arn(
                    rid, region, LOCAL_ACCOUNT_ID, alias
                )
        base = IntrinsicResolver.for_template(
            self.template,
            self.parameters,
            resources=resources,
            attributes=self._attributes(bucket_names),
            region=region,
        )
        references, attributes = state_machine_references(self.template.state_machines.values(), base)
        return IntrinsicResolver.for_template(
            self.template,
            self.parameters,
            resources={**resources, **references},
            attributes={**self._attributes(bucket_names), **attributes},
            region=region,
        )

    def _environment_overrides(self, store: StoreChoice) -> dict[str, str]:
        """Local values that beat the template's: the store's bucket (the template names the deployed one),
        the shell's job-sharding settings, and no state machine where none runs."""
        overrides = {ENV_BUCKET: store.bucket}
        overrides.update({name: os.environ[name] for name in SHELL_JOB_SETTINGS if os.environ.get(name)})
        if store.kind != "embedded":
            overrides[ENV_JOB_STATE_MACHINE_ARN] = ""
        return overrides

    def _state_machine_runner(
        self, store: StoreChoice, s3: S3Client, functions: LocalFunctions, resolver: IntrinsicResolver
    ) -> StateMachineRunner | None:
        """The runner of the template's state machines, checked (definitions, function names); not started."""
        if not self.template.state_machines:
            return None
        machines = [local_state_machine(spec, resolver) for spec in self.template.state_machines.values()]
        sfn = boto3.session.Session().client(
            "stepfunctions", endpoint_url=store.endpoint_url, region_name=resolver.region
        )

        def read_object(bucket: str, key: str) -> bytes:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

        runner = StateMachineRunner(
            machines,
            sfn=sfn,
            invoke=LocalLambdaInvoker(
                {f.spec.logical_id: FunctionEnvironments(f, limit=self.shard_workers) for f in functions}
            ),
            read_object=read_object,
            max_concurrency=self.shard_workers,
            retry_interval_scale=self.retry_interval_scale,
            data_dir=self.data_dir,
        )
        self._state_machines = machines
        return runner

    def _attributes(self, bucket_names: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """What Fn::GetAtt returns for the resources the stack created."""
        attributes = {rid: queue.attributes for rid, queue in self._queues.items()}
        for rid, name in bucket_names.items():
            attributes[rid] = {"Arn": f"arn:aws:s3:::{name}"}
        return attributes

    def _bucket_names(self, model_bucket: str) -> dict[str, str]:
        """Local names for the template's buckets: ModelBucket is the registry, others derive from it."""
        return {
            rid: model_bucket if rid == MODEL_BUCKET_RESOURCE else f"{model_bucket}-{rid.lower()}"
            for rid in self.template.resources_of_type(BUCKET_TYPE)
        } or {MODEL_BUCKET_RESOURCE: model_bucket}


def claim_data_folder(data_dir: Path) -> DataFolderLock:
    """Hold `data_dir`'s lock (maas.local.data_folder) for a stack's whole run: two stacks saving into one
    folder would overwrite each other's state and remembered port, so the second one stops here, before
    its store starts, even while the first is still seeding."""
    lock = DataFolderLock(data_dir)
    if lock.acquire(wait_seconds=LOCK_WAIT_SECONDS):
        return lock
    running = running_stack(data_dir)
    holder = f"pid {running.pid}, {running.url}" if running is not None else "still starting"
    raise DataFolderInUse(
        f"{data_dir}: a local stack already serves from this data folder ({holder}): use it, stop it, or "
        f"give this one another folder ({ENV_DATA_DIR}=PATH)"
    )


def read_timeout_from_environment(environ: Mapping[str, str]) -> float:
    """MAAS_LOCAL_READ_TIMEOUT_SECONDS, or the gateway's default when it is unset or empty."""
    text = environ.get(ENV_LOCAL_READ_TIMEOUT, "").strip()
    if not text:
        return READ_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigurationError(
            f"{ENV_LOCAL_READ_TIMEOUT}: expected a positive number of seconds, got {text!r}"
        )
    return seconds


def _started(part: T | None) -> T:
    """A part `start()` makes; before it (or after `close()`) there is none to hand out."""
    if part is None:
        raise RuntimeError("the local stack is not started")
    return part
