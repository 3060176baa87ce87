"""The whole system on a laptop: an object store, queues, a registry, and template.yaml's functions.

`make serve` runs `maas.cli.serve`, which hands the stack a seeder that trains the example models (the
stack itself never imports training code). Tests use `LocalStack` directly on an ephemeral port. The store is
chosen once, before any Settings or boto3 client exists, because botocore and maas.aws_clients
cache endpoints:

- `AWS_ENDPOINT_URL` set (LocalStack, MinIO): use it, creating the bucket if it is missing.
- `MAAS_BUCKET` set and AWS credentials found: use that real bucket, which must already exist.
- otherwise: an embedded moto server on 127.0.0.1 with dummy credentials.

Events run only against the embedded store: there the stack creates template.yaml's queues, gives
the model bucket its notifications and polls each function's SQS events (see maas.local.queues).
Another store's queues and notifications belong to whoever deployed it, so the stack leaves them
alone and serves HTTP only. Schedules are not emulated.

Template parameters take their defaults unless overridden (`parameters=`, or for `make serve` the
MAAS_LOCAL_PARAMETERS variable, e.g. "DataPlaneAuth=AWS_IAM"): they decide Conditions, and so which
resources exist and what each route's authorization is. The gateway enforces it as API Gateway
would; AWS_IAM routes accept SigV4 signatures by the keys of this process (testing/testing with the
embedded store).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import posixpath
import re
import shlex
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from maas.aws_clients import s3_client
from maas.config import DEFAULT_BUCKET, ENV_BUCKET, ENV_ENDPOINT_URL, Settings
from maas.errors import ConfigurationError
from maas.local.cloudformation import IntrinsicResolver, TemplateError
from maas.local.gateway import LocalGateway
from maas.local.http_server import READ_TIMEOUT_SECONDS
from maas.local.lambdas import LocalFunctions
from maas.local.process_environment import EnvironmentPatch
from maas.local.queues import (
    LocalQueue,
    SqsPoller,
    apply_bucket_notifications,
    create_queues,
    local_sqs_client,
    visibility_seconds,
)
from maas.local.sam import BUCKET_TYPE, DEFAULT_SQS_BATCH_SIZE, Route, SamTemplate
from maas.local.template_reader import load_template
from maas.local.template_routes import TemplateRoutes
from maas.registry import Manifest, ModelRegistry
from maas.registry.signing import signer_from_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

TEMPLATE_FILE = "template.yaml"
# `make serve`'s template parameter overrides, as `sam deploy --parameter-overrides` takes them.
ENV_LOCAL_PARAMETERS = "MAAS_LOCAL_PARAMETERS"
# `make serve`'s read timeout: seconds a whole request may take to arrive (maas.local.http_server).
ENV_LOCAL_READ_TIMEOUT = "MAAS_LOCAL_READ_TIMEOUT_SECONDS"
MODEL_BUCKET_RESOURCE = "ModelBucket"
ASYNC_QUEUE_RESOURCE = "AsyncQueue"
SEED_MODELS: tuple[str, ...] = ("seed-mlp",)
# Publishes what the stack should start with into its registry (after the gateway binds, before it
# serves), returning what it published: the CLI passes one that trains the example models.
Seeder = Callable[[ModelRegistry], Sequence[Manifest]]
DEFAULT_PORT = 3000
EMBEDDED_REGION = "us-east-1"
EMBEDDED_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

StoreKind = Literal["embedded", "endpoint", "aws"]


@dataclass(frozen=True, slots=True)
class StoreChoice:
    kind: StoreKind
    bucket: str
    endpoint_url: str | None = None


def choose_store(
    environ: Mapping[str, str], *, bucket: str | None = None, embedded: bool = False
) -> StoreChoice:
    """Pick the object store from the environment; `embedded=True` forces moto whatever it says (tests)."""
    chosen_bucket = bucket or environ.get(ENV_BUCKET) or DEFAULT_BUCKET
    if embedded:
        return StoreChoice("embedded", chosen_bucket)
    endpoint = environ.get(ENV_ENDPOINT_URL)
    if endpoint:
        return StoreChoice("endpoint", chosen_bucket, endpoint)
    if (bucket or environ.get(ENV_BUCKET)) and _aws_credentials_found():
        return StoreChoice("aws", chosen_bucket)
    return StoreChoice("embedded", chosen_bucket)


def _aws_credentials_found() -> bool:
    try:
        return boto3.session.Session().get_credentials() is not None
    except BotoCoreError:
        return False


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


def example_infer_body(rows: int = 3, features: int = 10) -> dict[str, Any]:
    """A V2 request for seed-mlp: FP32 [rows, features], row-major, deterministic values."""
    data = [round(((i * 7) % 23) / 10 - 1.0, 1) for i in range(rows * features)]
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, features], "data": data}]}


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

    `parameters` overrides template.yaml's parameter defaults, as `sam deploy --parameter-overrides`
    does (e.g. {"DataPlaneAuth": "AWS_IAM"}); a name the template does not declare, or a value its
    AllowedValues or AllowedPattern refuses, fails here.
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
        self._env = EnvironmentPatch()
        self._moto: Any = None
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
        try:
            store = self._start_store()
            settings = dataclasses.replace(Settings.from_env(), bucket=store.bucket)
            s3 = s3_client(settings.endpoint_url)
            bucket_names = self._bucket_names(store.bucket)
            if store.kind == "aws":
                _require_bucket(s3, store.bucket)
            else:
                for name in bucket_names.values():
                    _ensure_bucket(s3, name)
            registry = ModelRegistry(
                s3,
                settings.bucket,
                prefix=settings.prefix,
                default_alias=settings.default_alias,
                signer=signer_from_settings(settings),
            )
            self._store, self._settings, self._registry = store, settings, registry
            region = _region()
            sqs = None
            if store.kind == "embedded":
                sqs = local_sqs_client(store.endpoint_url, region)
                self._create_queues(sqs, s3, bucket_names, region)
            resolver = IntrinsicResolver.for_template(
                self.template,
                self.parameters,
                resources={**bucket_names, **{rid: queue.url for rid, queue in self._queues.items()}},
                attributes=self._attributes(bucket_names),
                region=region,
            )
            functions = LocalFunctions(
                self.template.functions.values(),
                root=self.root,
                resolver=resolver,
                # The template names the deployed bucket (maas-<stage>-<account>-<region>, or an existing
                # one); locally every function reads the store's.
                environment_overrides={ENV_BUCKET: store.bucket},
            )
            functions.apply_environment()  # before any handler is imported, routed or not
            self._functions = functions
            self._gateway = LocalGateway(
                self.template.routes,
                root=self.root,
                host=self.host,
                port=self.port,
                functions=functions,
                region=region,
                read_timeout_seconds=self.read_timeout_seconds,
            )
            self._gateway.bind()  # a busy port fails now, not after training; requests wait for start()
            self.seeded = list(self.seeder(registry)) if self.seeder else []
            self._gateway.start()
            if sqs is not None:
                self._start_pollers(sqs, functions, resolver)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        pollers, self._pollers = self._pollers, []
        for poller in pollers:
            poller.request_stop()  # all at once, so their long polls end together
        for poller in pollers:
            poller.stop()
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()
        functions, self._functions = self._functions, None
        if functions is not None:
            functions.restore_environment()
        self._queues = {}
        moto, self._moto = self._moto, None
        if moto is not None:
            moto.stop()
        self._env.restore()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The gateway's base URL, e.g. http://127.0.0.1:3000."""
        if self._gateway is None:
            raise RuntimeError("the local stack is not started")
        return self._gateway.url

    @property
    def store(self) -> StoreChoice:
        if self._store is None:
            raise RuntimeError("the local stack is not started")
        return self._store

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError("the local stack is not started")
        return self._settings

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise RuntimeError("the local stack is not started")
        return self._registry

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

    def curl_example(self, model: str = SEED_MODELS[0]) -> str:
        """An infer call as curl, signed or with a bearer token when the route requires one."""
        url = self.url.replace("://0.0.0.0:", "://127.0.0.1:")
        body = json.dumps(example_infer_body(), separators=(",", ":"))
        path = f"/v2/models/{model}/infer"
        route = self._route_for("POST", path)
        authorization = route.authorization.type if route is not None else "NONE"
        command = f"curl -s -X POST {url}{path}"
        if authorization == "AWS_IAM" and self._gateway is not None:
            command = self._gateway.signing_example(path).replace("curl -s ", "curl -s -X POST ", 1)
        elif authorization == "JWT":
            command += ' \\\n  -H "Authorization: Bearer $TOKEN"'
        return f"{command} \\\n  -H 'Content-Type: application/json' \\\n  -d {shlex.quote(body)}"

    def _route_for(self, method: str, path: str) -> Route | None:
        match = TemplateRoutes(self.template.routes).match(method, path)
        return match.route if match is not None else None

    def banner(self) -> str:
        store = self.store
        where = {
            "embedded": f"embedded S3 (moto) at {store.endpoint_url}, bucket {store.bucket}",
            "endpoint": f"S3 endpoint {store.endpoint_url}, bucket {store.bucket}",
            "aws": f"AWS S3 bucket {store.bucket}",
        }[store.kind]
        lines = [f"maas is serving {self.url} ({len(self.template.routes)} routes from {TEMPLATE_FILE})"]
        lines.append(f"models: {where}")
        if store.kind == "embedded":
            lines.append(
                "from another shell, first: "
                f"export AWS_ENDPOINT_URL={store.endpoint_url} AWS_ACCESS_KEY_ID=testing "
                f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={EMBEDDED_REGION} "
                f"{ENV_BUCKET}={store.bucket}"
            )
            lines.append("  then `maas ...` publishes into it")
        lines += self._auth_lines()
        lines += ["try:", self.curl_example()]
        lines += self._event_lines()
        lines.append("Ctrl-C stops.")
        return "\n".join(lines)

    def _auth_lines(self) -> list[str]:
        """Which routes need what, and how to call the protected ones."""
        by_authorization: dict[str, list[Route]] = {}
        for route in self.template.routes:
            by_authorization.setdefault(route.authorization.describe(), []).append(route)
        overrides = " ".join(f"{name}={value}" for name, value in self.parameters.items())
        lines = [f"auth, as {TEMPLATE_FILE} declares it" + (f" with {overrides}:" if overrides else ":")]
        lines += [f"  {kind}: {_route_summary(routes)}" for kind, routes in by_authorization.items()]
        iam_routes = [r for r in self.template.routes if r.authorization.type == "AWS_IAM"]
        if iam_routes and self._gateway is not None:
            lines.append("  sign calls to AWS_IAM routes with SigV4 (service execute-api), e.g.:")
            lines.append(f"    {self._gateway.signing_example(_example_path(iam_routes))}")
        for route in self.template.routes:
            jwt = route.authorization.jwt
            if jwt is not None:
                audience = ", ".join(jwt.audience) or "none set: every token is refused"
                lines.append(
                    f"  JWT routes take '{jwt.identity_sources[0]}: Bearer <token>' from "
                    f"{jwt.issuer or 'an issuer with no local value'} (aud: {audience})"
                )
                break
        return lines

    def _event_lines(self) -> list[str]:
        store = self.store
        if not self.events_emulated:
            return [
                f"events: not emulated against {store.kind} storage (no queues, notifications or pollers)"
            ]
        pollers = ", ".join(f"{p.queue.logical_id} -> {p.source.function_id}" for p in self._pollers)
        lines = [f"events: {pollers or 'no SQS events in the template'}"]
        model = SEED_MODELS[0]
        # AWS CLI v1 ignores AWS_ENDPOINT_URL, so the commands name the endpoint themselves.
        aws = f"aws --endpoint-url {store.endpoint_url}"
        prefix = self.settings.prefix
        if self.template.queue_notifications:
            lines += [
                "start a batch job (one row per line; output.jsonl and status.json appear beside the input):",
                f"  maas jobs submit rows.jsonl --model {model}",
                f"  or: {aws} s3 cp rows.jsonl s3://{store.bucket}/{prefix}jobs/{model}/<job-id>/input.jsonl",
            ]
        if ASYNC_QUEUE_RESOURCE in self._queues:
            request = {"model": model, "id": "r1", "inputs": example_infer_body(rows=1)["inputs"]}
            body = shlex.quote(json.dumps(request, separators=(",", ":")))
            lines += [
                f"send an async request (the answer appears at s3://{store.bucket}/{prefix}results/r1.json):",
                f"  {aws} sqs send-message --queue-url {self.queue_url(ASYNC_QUEUE_RESOURCE)} "
                f"--message-body {body}",
            ]
        return lines

    def _start_store(self) -> StoreChoice:
        store = choose_store(os.environ, bucket=self._bucket, embedded=self._embedded)
        if store.kind != "embedded":
            return store
        from moto.server import ThreadedMotoServer  # dev-only and slow to import

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its state per process, not per server: an embedded store starts empty, as promised.
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
        )
        self._env.set(ENV_ENDPOINT_URL, endpoint)
        for name, value in EMBEDDED_CREDENTIALS.items():
            self._env.set(name, value)
        self._env.set("AWS_DEFAULT_REGION", EMBEDDED_REGION)
        self._env.set("AWS_REGION", EMBEDDED_REGION)
        self._env.set("AWS_PROFILE", None)
        return dataclasses.replace(store, endpoint_url=endpoint)

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


def _route_summary(routes: Sequence[Route]) -> str:
    """A few routes by name, more as a count under their common path."""
    if len(routes) <= 3:
        return ", ".join(route.route_key for route in routes)
    paths = [route.path for route in routes if route.path.startswith("/")]
    common = posixpath.commonpath(paths) if len(paths) == len(routes) else "/"
    prefix = common.split("/{", 1)[0]
    return f"{len(routes)} routes" + (f" under {prefix}" if prefix.strip("/") else "")


def _example_path(routes: Sequence[Route]) -> str:
    """A path that reaches one of `routes`: a GET without variables if there is one."""
    plain = [r for r in routes if r.method in ("GET", "ANY") and "{" not in r.path and r.path.startswith("/")]
    route = plain[0] if plain else routes[0]
    if not route.path.startswith("/"):
        return "/"
    return re.sub(r"\{([^}+]+)\+?\}", lambda m: SEED_MODELS[0] if m.group(1) == "name" else "1", route.path)


def _ensure_bucket(s3: S3Client, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigurationError(f"bucket {bucket}: cannot check it ({exc})") from None
    region = s3.meta.region_name
    if region and region != EMBEDDED_REGION:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
    else:
        s3.create_bucket(Bucket=bucket)


def _require_bucket(s3: S3Client, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigurationError(
            f"{ENV_BUCKET}={bucket}: expected an existing bucket you can read, got {exc}. Deploy the stack "
            f"(its ModelBucketName output), or unset {ENV_BUCKET} to use the embedded store."
        ) from None


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


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or EMBEDDED_REGION
