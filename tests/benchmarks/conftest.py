"""Benchmarks run only under `make bench` (MAAS_BENCH=1), against one moto server holding seed-mlp.

The moto server lives in this process and every measurement in a fresh child, so the store's memory and
CPU bookkeeping never count as the function's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest

from maas.registry import Manifest, ModelRegistry
from tests.benchmarks.harness import BenchResults
from tests.conftest import TEST_BUCKET

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BENCH_ENV = "MAAS_BENCH"
BENCHMARKS_ON = os.environ.get(BENCH_ENV) == "1"
STORE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
STORE_REGION = "us-east-1"
SEED_OVERRIDES = {"epochs": 2}
_RESULTS = pytest.StashKey[BenchResults]()

if not BENCHMARKS_ON:
    # `make test` collects all of tests/: benchmarks take minutes and assert nothing about speed.
    collect_ignore_glob = ["*"]


@pytest.fixture(autouse=True)
def _only_under_make_bench() -> None:
    # A benchmark file named on the command line is collected despite collect_ignore_glob.
    if not BENCHMARKS_ON:
        pytest.skip(f"benchmarks run only under `make bench` ({BENCH_ENV}=1)")


@pytest.fixture(scope="session")
def bench_results(request: pytest.FixtureRequest) -> Iterator[BenchResults]:
    """The run's record; written to bench-results/ at the end even when a later case errors."""
    results = BenchResults()
    request.config.stash[_RESULTS] = results
    yield results
    results.write()


@dataclass(frozen=True, slots=True)
class BenchStore:
    endpoint_url: str
    bucket: str
    s3: S3Client
    seed: Manifest

    def function_env(self, **settings: str) -> dict[str, str]:
        """What a function's process needs to reach this store, as the local stack would set it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": STORE_REGION,
            "MAAS_BUCKET": self.bucket,
            "MAAS_PROVIDER": "cpu",
            **STORE_CREDENTIALS,
            **settings,
        }


@pytest.fixture(scope="session")
def bench_store() -> Iterator[BenchStore]:
    from moto.server import ThreadedMotoServer

    from maas.training import train_and_publish

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        s3: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=STORE_REGION,
            aws_access_key_id=STORE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=STORE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=TEST_BUCKET)
        seed = train_and_publish("seed-mlp", ModelRegistry(s3, TEST_BUCKET), overrides=SEED_OVERRIDES)
        yield BenchStore(endpoint_url, TEST_BUCKET, s3, seed)
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, None)
    if results is None or results.markdown is None:
        return
    terminalreporter.write_sep("=", "benchmark results (bench-results/results.md)")
    terminalreporter.write(results.markdown)
