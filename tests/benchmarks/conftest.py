"""Benchmarks run only under `make bench` (MAAS_BENCH=1), against one moto server holding seed-mlp.

The moto server lives in this process and every measurement in a fresh child, so the store's memory and
CPU bookkeeping never count as the function's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import boto3
import pytest

from maas.config import ENV_INTRA_OP_THREADS
from maas.registry import Manifest, ModelRegistry
from maas.runtime import usable_cpus
from tests.benchmarks.harness import BenchResults
from tests.conftest import TEST_BUCKET, load_function_module

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from maas.training import TrainedModel

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


class ModelZoo:
    """Each recipe trained once per run at its default config (what `make demo` publishes), and its int8
    version, so every case measures the same models. Training happens on first use."""

    # The int8 numbers are measured whatever they lose; the publishing gate is not the benchmark's concern.
    INT8_MAX_DEGRADATION = 1.0

    def __init__(self) -> None:
        self._trained: dict[str, TrainedModel] = {}
        self._int8: dict[str, TrainedModel] = {}
        self._published: dict[tuple[str, str], Manifest] = {}

    def trained(self, recipe: str) -> TrainedModel:
        from maas.training import train_recipe

        if recipe not in self._trained:
            self._trained[recipe] = train_recipe(recipe)
        return self._trained[recipe]

    def int8(self, recipe: str) -> TrainedModel:
        from maas.training.quantize import quantize_trained

        if recipe not in self._int8:
            self._int8[recipe] = quantize_trained(
                self.trained(recipe), max_degradation=self.INT8_MAX_DEGRADATION
            )
        return self._int8[recipe]

    def published(
        self, store: BenchStore, recipe: str, *, name: str | None = None, int8: bool = False
    ) -> Manifest:
        """The recipe's model in the bench store, published once under `name`: by default `<recipe>-fp32` or
        `<recipe>-int8`, so it never becomes a new version of the store's own seed-mlp."""
        from maas.training import publish_trained

        model_name = name or f"{recipe}-{'int8' if int8 else 'fp32'}"
        key = (model_name, "int8" if int8 else "fp32")
        if key not in self._published:
            model = self.int8(recipe) if int8 else self.trained(recipe)
            self._published[key] = publish_trained(
                model, ModelRegistry(store.s3, store.bucket), name=model_name
            )
        return self._published[key]


@pytest.fixture(scope="session")
def bench_models() -> ModelZoo:
    return ModelZoo()


@pytest.fixture
def stdout_to_devnull() -> Iterator[None]:
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        yield


@pytest.fixture
def infer_function(bench_store: BenchStore, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh infer function in this process, pointed at the bench store, with one intra-op thread per
    usable CPU (the runtime's default, set explicitly so the details can state it)."""
    env = bench_store.function_env(**{ENV_INTRA_OP_THREADS: str(usable_cpus())})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_function_module("infer")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, None)
    if results is None or results.markdown is None:
        return
    terminalreporter.write_sep("=", "benchmark results (bench-results/results.md)")
    terminalreporter.write(results.markdown)
