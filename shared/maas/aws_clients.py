"""AWS clients made once per process, on first use.

botocore reads AWS_ENDPOINT_URL itself; passing Settings.endpoint_url explicitly keeps an explicit
argument stronger than the environment. AWS, moto server, LocalStack and MinIO share this path.

The functions' client comes from botocore directly: maas calls only the S3 API, and importing boto3 costs a
cold start about 150 ms more (its managed-transfer layer, s3transfer) for nothing a function uses. Tools that
upload and download whole files (the CLI) ask for `s3_transfer_client`, a boto3 client, instead.

KMS and Secrets Manager are called only when manifest signing is configured (MAAS_MANIFEST_SIGNING), Step
Functions only by the batch function starting a job in shards (MAAS_JOB_STATE_MACHINE_ARN). Their clients
are typed by the small protocols below, the slice of each API maas calls, so no stub package is needed for
them.

Each client is handed out as a RenewableClient: a copy of the function restored from a SnapStart snapshot
calls `renew_clients()`, and every holder (a registry, a job service, a queue adapter) is then served by a
new client, with credentials resolved afresh and no connection from the snapshot, without being told.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, cast

import botocore.session
from botocore.config import Config

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_s3 import S3Client

_lock = threading.Lock()
# Read-only parts every client's session can share (botocore's parsed service models).
_shared_components: dict[str, Any] = {}

_CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


# Parameter names are the AWS API's own, as botocore takes them.
class KmsMacClient(Protocol):
    """The KMS calls manifest signing makes with an HMAC key."""

    def generate_mac(self, *, KeyId: str, Message: bytes, MacAlgorithm: str) -> dict[str, Any]: ...  # noqa: N803

    def verify_mac(
        self,
        *,
        KeyId: str,  # noqa: N803
        Message: bytes,  # noqa: N803
        MacAlgorithm: str,  # noqa: N803
        Mac: bytes,  # noqa: N803
    ) -> dict[str, Any]: ...


class SecretsClient(Protocol):
    """The Secrets Manager call manifest signing makes to read its HMAC key."""

    def get_secret_value(self, *, SecretId: str) -> dict[str, Any]: ...  # noqa: N803


class StepFunctionsClient(Protocol):
    """The Step Functions call the batch function makes to run a large job in shards."""

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]: ...  # noqa: N803


class RenewableClient:
    """A botocore client behind one indirection, so that `renew` replaces it under every holder at once.

    A snapshot holds the client's resolved credentials and its pooled connections; neither may serve a
    restored copy (credentials expire, and a connection's peer forgot it long ago)."""

    __slots__ = ("__weakref__", "_client", "_make")

    def __init__(self, make: Callable[[], BaseClient]) -> None:
        self._make = make
        self._client = make()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def renew(self) -> None:
        self._client = self._make()


# Every client handed out and still held, for `renew_clients`.
_renewable_clients: weakref.WeakSet[RenewableClient] = weakref.WeakSet()


def renew_clients() -> int:
    """A new client (new session, credentials and connections) under every client handed out; the number
    renewed. Called after a SnapStart restore."""
    clients = list(_renewable_clients)
    for client in clients:
        client.renew()
    # The CLI's boto3 client has no holder in a function; a later call simply makes a new one.
    s3_transfer_client.cache_clear()
    return len(clients)


@lru_cache(maxsize=8)
def s3_client(endpoint_url: str | None = None) -> S3Client:
    return cast("S3Client", _handed_out(lambda: _botocore_client("s3", endpoint_url)))


@lru_cache(maxsize=8)
def kms_client(endpoint_url: str | None = None) -> KmsMacClient:
    return cast("KmsMacClient", _handed_out(lambda: _botocore_client("kms", endpoint_url)))


@lru_cache(maxsize=8)
def secrets_client(endpoint_url: str | None = None) -> SecretsClient:
    return cast("SecretsClient", _handed_out(lambda: _botocore_client("secretsmanager", endpoint_url)))


@lru_cache(maxsize=8)
def stepfunctions_client(endpoint_url: str | None = None) -> StepFunctionsClient:
    return cast("StepFunctionsClient", _handed_out(lambda: _botocore_client("stepfunctions", endpoint_url)))


@lru_cache(maxsize=8)
def s3_transfer_client(endpoint_url: str | None = None) -> S3Client:
    """A boto3 client: the same API plus upload_file and download_file (multipart, parallel, retried)."""
    import boto3

    with _lock:
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=_CLIENT_CONFIG)


def _handed_out(make: Callable[[], BaseClient]) -> RenewableClient:
    client = RenewableClient(make)
    _renewable_clients.add(client)
    return client


def _botocore_client(service: str, endpoint_url: str | None) -> BaseClient:
    # Client creation is not thread-safe while a session initialises.
    with _lock:
        # A session of its own (its own credentials), but the parsed service models of the first: a renewal
        # after a restore then costs about 25 ms instead of 150 (measured; decision 0023).
        session = botocore.session.get_session()
        loader = _shared_components.setdefault("data_loader", session.get_component("data_loader"))
        session.register_component("data_loader", loader)
        return session.create_client(service, endpoint_url=endpoint_url, config=_CLIENT_CONFIG)
