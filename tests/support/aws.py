"""Fake AWS for tests: the fake credentials every test runs under, moto in-process, and moto as a real HTTP
server for code that must reach S3/SQS over the network (the CLI, the local stack, concurrent clients)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from maas.aws_clients import s3_client, s3_transfer_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TEST_BUCKET = "maas-test-models"
REGION = "us-east-1"
FAKE_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
# The developer's shell may point these at a real account or bucket; no test may inherit them.
INHERITED_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "MAAS_BUCKET",
    "MAAS_PREFIX",
    "MAAS_PROVIDER",
    "MAAS_DEFAULT_ALIAS",
)


def use_fake_aws(env: pytest.MonkeyPatch) -> None:
    """Fake credentials and none of the shell's AWS or maas settings, so no test can reach a real account."""
    for name, value in FAKE_CREDENTIALS.items():
        env.setenv(name, value)
    for name in INHERITED_SETTINGS:
        env.delenv(name, raising=False)
    # botocore's default trailing checksum (an aws-chunked body) is decoded by in-process moto in time
    # quadratic in the size: a 540 MB upload took 281 s instead of 8. Checksums only where S3 requires them.
    env.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    # Each test is a fresh container: a client cached by an earlier test holds that test's credentials
    # (or none, for a test that ran without them) and its endpoint.
    s3_client.cache_clear()
    s3_transfer_client.cache_clear()


@contextmanager
def moto_bucket(bucket: str = TEST_BUCKET) -> Iterator[S3Client]:
    """An in-process moto S3 holding one empty bucket, for as long as the block runs."""
    with mock_aws():
        client: S3Client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=bucket)
        yield client


@contextmanager
def moto_bucket_for_module() -> Iterator[tuple[pytest.MonkeyPatch, S3Client]]:
    """Fake AWS and a moto bucket for a module-scoped fixture, which cannot use the per-test
    `aws_credentials` and `s3`: yields the environment to set the function's settings on, and the client."""
    with pytest.MonkeyPatch.context() as env:
        use_fake_aws(env)
        with moto_bucket() as s3:
            yield env, s3


@contextmanager
def moto_server() -> Iterator[str]:
    """The moto server `make serve` runs (multi-GB objects included), on a free local port; yields its URL."""
    from maas.local.object_store import running_moto_server  # the local stack's imports, only when used

    with running_moto_server() as endpoint:
        yield endpoint


def use_endpoint(env: pytest.MonkeyPatch, endpoint_url: str) -> None:
    """Point this process's AWS clients at `endpoint_url` with dummy credentials, as the local stack does."""
    env.setenv("AWS_ENDPOINT_URL", endpoint_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.setenv(name, "testing")
    env.setenv("AWS_DEFAULT_REGION", REGION)


# Every variable through which the developer's shell could steer boto3 or the service.
AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "POWERTOOLS_SERVICE_NAME",
)


def remove_shell_settings(env: pytest.MonkeyPatch) -> None:
    """None of the shell's AWS or MAAS_* variables: for code that sets its own (the local stack)."""
    for name in [*AWS_VARIABLES, *(n for n in os.environ if n.startswith("MAAS_"))]:
        env.delenv(name, raising=False)
