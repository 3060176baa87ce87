"""Benchmarks run only under `make bench` (MAAS_BENCH=1), against one moto server holding seed-mlp.

The moto server lives in this process and every measurement in a fresh child, so the store's memory and
CPU bookkeeping never count as the function's.

A run of the whole folder replaces bench-results/ with what it measured. A run of some cases merges into
it: files or tests named on the command line (`make bench PYTEST_ARGS=benchmarks/test_llm_decode.py`),
or a selection by -k or -m. Each case measured then replaces that case's older rows; the other rows stay,
each marked with the run that measured it (benchmarks.record).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import boto3
import pytest
from tests.support.aws import TEST_BUCKET, moto_server, use_fake_aws
from tests.support.functions import load_function_module

from benchmarks.harness import BenchResults
from benchmarks.llm_models import LlmZoo
from benchmarks.store import SEED_OVERRIDES, STORE_CREDENTIALS, STORE_REGION, BenchStore, ModelZoo
from maas.config import ENV_INTRA_OP_THREADS
from maas.registry import ModelRegistry
from maas.runtime import usable_cpus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BENCH_ENV = "MAAS_BENCH"
BENCHMARKS_ON = os.environ.get(BENCH_ENV) == "1"
_RESULTS = pytest.StashKey[BenchResults]()
_DESELECTED = pytest.StashKey[bool]()

if not BENCHMARKS_ON:
    # A bare `pytest benchmarks` (or an IDE run) would spend minutes measuring; `make bench` sets the switch.
    collect_ignore_glob = ["*"]


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials everywhere, as in the tests: a benchmark never reaches a real AWS account."""
    use_fake_aws(monkeypatch)


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
    results.write(merge=not ran_every_case(request.config))


def ran_every_case(config: pytest.Config) -> bool:
    """Whether the run was asked for the whole folder: nothing narrower named, nothing deselected."""
    folder = Path(__file__).resolve().parent
    named = {Path(config.invocation_params.dir, arg).resolve() for arg in config.args}
    return named == {folder} and not config.stash.get(_DESELECTED, False)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        items[0].config.stash[_DESELECTED] = True


@pytest.fixture(scope="session")
def bench_store() -> Iterator[BenchStore]:
    from maas.training import train_and_publish

    with moto_server() as endpoint_url:
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


@pytest.fixture(scope="session")
def bench_models() -> ModelZoo:
    return ModelZoo()


@pytest.fixture
def threads() -> Iterator[int]:
    """onnxruntime's intra-op threads: one per usable CPU, as the runtime sets them; torch's too, for the
    cases that compare against it. torch's thread count is restored afterwards, whatever a case set it to."""
    import torch  # only the cases against torch pay for its import

    count = usable_cpus()
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bench_llms() -> LlmZoo:
    return LlmZoo()


@pytest.fixture
def stdout_to_devnull() -> Iterator[None]:
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        yield


@pytest.fixture
def infer_function(bench_store: BenchStore, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh infer function in this process, pointed at the bench store, with one intra-op thread per
    usable CPU (the runtime's default, set explicitly so the details can state it)."""
    return bench_function("infer", bench_store, monkeypatch)


@pytest.fixture
def generate_function(bench_store: BenchStore, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh generate function in this process, as `infer_function` is."""
    return bench_function("generate", bench_store, monkeypatch)


def bench_function(function: str, bench_store: BenchStore, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    env = bench_store.function_env(**{ENV_INTRA_OP_THREADS: str(usable_cpus())})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_function_module(function)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, None)
    if results is None or results.markdown is None:
        return
    terminalreporter.write_sep("=", "benchmark results (bench-results/results.md)")
    terminalreporter.write(results.markdown)
