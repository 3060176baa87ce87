"""AWS clients made once per process, on first use.

botocore reads AWS_ENDPOINT_URL itself; passing Settings.endpoint_url explicitly keeps an explicit
argument stronger than the environment. AWS, moto server, LocalStack and MinIO share this path.

The functions' client comes from botocore directly: maas calls only the S3 API, and importing boto3 costs a
cold start about 150 ms more (its managed-transfer layer, s3transfer) for nothing a function uses. Tools that
upload and download whole files (the CLI) ask for `s3_transfer_client`, a boto3 client, instead.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import botocore.session
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_lock = threading.Lock()

_CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


@lru_cache(maxsize=8)
def s3_client(endpoint_url: str | None = None) -> S3Client:
    # Client creation is not thread-safe while a session initialises.
    with _lock:
        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint_url, config=_CLIENT_CONFIG
        )
    return cast("S3Client", client)


@lru_cache(maxsize=8)
def s3_transfer_client(endpoint_url: str | None = None) -> S3Client:
    """A boto3 client: the same API plus upload_file and download_file (multipart, parallel, retried)."""
    import boto3

    with _lock:
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=_CLIENT_CONFIG)
