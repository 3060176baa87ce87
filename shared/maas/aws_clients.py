"""boto3 clients made once per process, on first use.

boto3 reads AWS_ENDPOINT_URL itself; passing Settings.endpoint_url explicitly keeps an explicit
argument stronger than the environment. AWS, moto server, LocalStack and MinIO share this path.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import boto3
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
    # Client creation is not thread-safe while a boto3 session initialises.
    with _lock:
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=_CLIENT_CONFIG)
