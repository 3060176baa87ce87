"""Fixtures of the registry tests."""

from __future__ import annotations

from typing import Any

import pytest

from maas.objects import MIN_PART_BYTES
from maas.registry import ModelRegistry
from tests.support.aws import TEST_BUCKET


@pytest.fixture
def parted(s3: Any) -> ModelRegistry:
    """A registry on moto that cuts files into S3's smallest parts (5 MiB): a multipart artifact costs
    ~11-16 MB."""
    return ModelRegistry(s3, TEST_BUCKET, part_bytes=MIN_PART_BYTES)
