"""A boto error a command lets through becomes one line naming the bucket and endpoint, never a traceback;
any other exception is left alone."""

from __future__ import annotations

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, NoCredentialsError

from maas.cli.target import storage_failure_message


@pytest.fixture(autouse=True)
def local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4567")
    monkeypatch.setenv("MAAS_BUCKET", "local-models")


def test_missing_credentials_name_bucket_endpoint_and_fix() -> None:
    message = storage_failure_message(NoCredentialsError(), "maas jobs")

    assert message is not None
    assert message.startswith(
        "maas jobs: storage unreachable (NoCredentialsError) s3://local-models at http://127.0.0.1:4567; "
        "configure AWS credentials"
    )


def test_a_missing_key_keeps_botos_words_and_says_where() -> None:
    missing = ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")

    assert storage_failure_message(missing, "maas jobs") == (
        "maas jobs: An error occurred (NoSuchKey) when calling the GetObject operation: gone "
        "(s3://local-models at http://127.0.0.1:4567)"
    )


def test_a_failed_transfer_says_where() -> None:
    failed = S3UploadFailedError("Failed to upload rows.jsonl")

    assert storage_failure_message(failed, "maas jobs") == (
        "maas jobs: Failed to upload rows.jsonl (s3://local-models at http://127.0.0.1:4567)"
    )


def test_any_other_exception_is_not_a_storage_failure() -> None:
    assert storage_failure_message(ValueError("a bug"), "maas jobs") is None
