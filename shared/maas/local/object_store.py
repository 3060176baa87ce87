"""Which object store the local stack uses, and readying it: chosen once, before any Settings or boto3
client exists, because botocore and maas.aws_clients cache endpoints.

- `AWS_ENDPOINT_URL` set (LocalStack, MinIO): use it, creating the bucket if it is missing.
- `MAAS_BUCKET` set and AWS credentials found: use that real bucket, which must already exist.
- otherwise: an embedded moto server on 127.0.0.1 with dummy credentials (`EmbeddedStore`).
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from maas.config import DEFAULT_BUCKET, ENV_BUCKET, ENV_ENDPOINT_URL
from maas.errors import ConfigurationError
from maas.local.ports import port_is_free, remember_store_port, store_port_in_use
from maas.local.process_environment import EnvironmentPatch
from maas.local.store_state import StoreState

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer
    from mypy_boto3_s3 import S3Client

EMBEDDED_REGION = "us-east-1"
EMBEDDED_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

# How far the saved queues may lag behind the served ones (maas.local.store_state).
SQS_SAVE_INTERVAL_SECONDS = 1.0

logger = logging.getLogger(__name__)

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


def start_moto_server(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """A moto server on `host:port` (0: a free port) that holds multi-GB objects
    (maas.local.moto_large_objects: ranged GETs read only their range, multipart completions stream) and
    applies each conditional write
    atomically (maas.local.store_requests); returns it, to stop, and its endpoint. A taken port raises
    PortInUse. moto keeps one state per process: every server of this process sees the same buckets."""
    from moto.server import ThreadedMotoServer  # dev-only and slow to import

    from maas.local.moto_large_objects import install_large_object_support
    from maas.local.store_requests import install_serialized_mutations

    install_large_object_support()
    install_serialized_mutations()

    class ReportingServer(ThreadedMotoServer):
        """moto's server thread waits forever when werkzeug cannot bind (werkzeug prints two lines and
        exits the thread); this one reports the failure."""

        bind_failed = False

        def _server_entry(self) -> None:
            try:
                super()._server_entry()
            except (OSError, SystemExit):
                self.bind_failed = True
                self._server_ready_event.set()

    if port and not port_is_free(host, port):  # before werkzeug, which would print its own lines
        raise store_port_in_use(host, port)
    server = ReportingServer(ip_address=host, port=port, verbose=False)
    server.start()
    if server.bind_failed:
        raise store_port_in_use(host, port)
    bound_host, bound_port = server.get_host_and_port()
    return server, f"http://{bound_host}:{bound_port}"


@contextmanager
def running_moto_server() -> Iterator[str]:
    """`start_moto_server` for the length of a block; yields the endpoint URL."""
    server, endpoint = start_moto_server()
    try:
        yield endpoint
    finally:
        server.stop()


class EmbeddedStore:
    """moto's S3 and SQS on 127.0.0.1, with this process's AWS settings (endpoint, dummy credentials, region)
    pointed at it through `environment`, whose owner restores them.

    Without `data_dir` it starts empty and keeps nothing. With one it starts from the state saved there and
    keeps what changes (maas.local.store_state), on the port maas.local.ports chooses."""

    def __init__(
        self,
        environment: EnvironmentPatch,
        *,
        data_dir: Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self._environment = environment
        self._server: ThreadedMotoServer | None = None
        self._data_dir = data_dir
        self._port = port
        self._host = host
        self._state: StoreState | None = None
        self._saver: PeriodicSqsSaver | None = None
        self.restored = False

    def start(self) -> str:
        """Start the server and point the process at it; returns its endpoint URL."""
        from maas.local.store_requests import keep_state_in

        self._server, endpoint = start_moto_server(self._host, self._port)
        # moto keeps its state per process, not per server: an embedded store starts from nothing, or
        # from what its data folder holds, never from what another store of this process left.
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
        )
        if self._data_dir is not None:
            self._state = StoreState(self._data_dir)
            self.restored = self._state.restore()
            keep_state_in(self._state)
            self._saver = PeriodicSqsSaver(self._state).start()
            remember_store_port(self._data_dir, int(endpoint.rsplit(":", 1)[1]))
        self._environment.set(ENV_ENDPOINT_URL, endpoint)
        for name, value in EMBEDDED_CREDENTIALS.items():
            self._environment.set(name, value)
        self._environment.set("AWS_DEFAULT_REGION", EMBEDDED_REGION)
        self._environment.set("AWS_REGION", EMBEDDED_REGION)
        self._environment.set("AWS_PROFILE", None)
        return endpoint

    def stop(self) -> None:
        from maas.local.store_requests import keep_state_in

        server, self._server = self._server, None
        if server is not None:
            server.stop()
        saver, self._saver = self._saver, None
        if saver is not None:
            saver.stop()  # after the server: the last SQS request is in the final save
        if self._state is not None:
            keep_state_in(None)
            self._state = None


class PeriodicSqsSaver:
    """Saves the SQS state about once a second, and a last time at stop."""

    def __init__(self, state: StoreState, interval_seconds: float = SQS_SAVE_INTERVAL_SECONDS) -> None:
        self._state = state
        self._interval = interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maas-sqs-saver", daemon=True)

    def start(self) -> PeriodicSqsSaver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._state.save_sqs()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._state.save_sqs()
            except Exception:  # the next second tries again; stop() saves once more, and raises there
                logger.exception("saving the local store's queues")


def ensure_bucket(s3: S3Client, bucket: str) -> None:
    """Create `bucket` unless it exists (an endpoint's or the embedded store's)."""
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


def require_bucket(s3: S3Client, bucket: str) -> None:
    """A real AWS bucket must exist already: the local stack never creates one in an account."""
    try:
        s3.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigurationError(
            f"{ENV_BUCKET}={bucket}: expected an existing bucket you can read, got {exc}. Deploy the stack "
            f"(its ModelBucketName output), or unset {ENV_BUCKET} to use the embedded store."
        ) from None


def process_region() -> str:
    """The region this process's AWS clients use (the embedded store's when none is set)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or EMBEDDED_REGION
