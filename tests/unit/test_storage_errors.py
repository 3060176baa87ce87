"""What a storage failure says: the bucket, where it was looked for (an endpoint, or AWS S3 in a region),
and what to do, for a store that does not answer, missing credentials, a missing bucket and a refusal."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError

from maas.errors import Unavailable
from maas.objects import storage_errors

ONE_TRY = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=2)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_store_that_does_not_answer_names_bucket_and_endpoint_and_the_local_stack() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=ONE_TRY)

    with pytest.raises(Unavailable) as failed, storage_errors("listing models", s3=s3, bucket="maas-models"):
        s3.list_objects_v2(Bucket="maas-models")

    assert failed.value.message == (
        f"listing models: storage unreachable (EndpointConnectionError) s3://maas-models at {endpoint}: "
        "nothing answers there; is the local stack running? Start it with `make serve`"
    )
    assert failed.value.status == 503


def test_missing_credentials_name_the_aws_region_and_both_ways_to_get_storage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3 = boto3.session.Session().client("s3", region_name="eu-west-1", config=ONE_TRY)

    with (
        pytest.raises(Unavailable) as failed,
        storage_errors("reading s3://maas-models/models/m/latest", s3=s3),
    ):
        s3.get_object(Bucket="maas-models", Key="models/m/latest")

    assert failed.value.message == (
        "reading s3://maas-models/models/m/latest: storage unreachable (NoCredentialsError) in AWS S3 "
        "(eu-west-1); configure AWS credentials that may use the bucket (aws configure, AWS_PROFILE), or use "
        "the local stack (`make serve`)"
    )


def test_without_a_client_the_environment_says_where_storage_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4567")
    monkeypatch.setenv("MAAS_BUCKET", "local-models")

    with pytest.raises(Unavailable) as failed, storage_errors("listing versions of model 'm'"):
        raise NoCredentialsError

    assert failed.value.message.startswith(
        "listing versions of model 'm': storage unreachable (NoCredentialsError) s3://local-models at "
        "http://127.0.0.1:4567; configure AWS credentials"
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("NoSuchBucket", "checking: the bucket does not exist (s3://gone at http://127.0.0.1:9)"),
        (
            "AccessDenied",
            "checking: storage error AccessDenied (s3://gone at http://127.0.0.1:9); configure AWS",
        ),
        ("InternalError", "checking: storage error InternalError (s3://gone at http://127.0.0.1:9)"),
    ],
)
def test_a_refusal_names_the_bucket_and_endpoint(code: str, expected: str) -> None:
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    refusal = ClientError({"Error": {"Code": code, "Message": "no"}}, "HeadObject")

    with pytest.raises(Unavailable) as failed, storage_errors("checking", s3=s3, bucket="gone"):
        raise refusal

    assert failed.value.message.startswith(expected)
    assert code != "InternalError" or failed.value.message == expected
