"""SnapStart's runtime hooks, called as Lambda's runtime calls them, in a fresh process per function, against
a moto server holding a small published model (decision 0023):

- before the snapshot the WarmModels version is loaded into the function's cache;
- after the restore the random state is not the snapshot's (the canary split's next draw differs from the
  one every copy of the snapshot would have made) and the S3 client is a new one;
- an alias moved while the snapshot sat in Lambda's cache answers the first request after the restore,
  although the alias TTL had not run out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from maas.registry import ModelRegistry
from maas.registry.admin import RegistryAdmin
from tests.support.aws import FAKE_CREDENTIALS, REGION, TEST_BUCKET, moto_server
from tests.support.models import batch_sum_model
from tests.support.paths import ROOT
from tests.support.snapshot_process import REPORT

MODEL = "snap-sum"
# Long enough that only the restore hook can make the function resolve the alias again.
ALIAS_TTL_SECONDS = "3600"
# Generous for a loaded machine; the process waits on the test, never on a clock.
PROCESS_SECONDS = 180


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ModelRegistry]]:
    """A moto server holding two versions of a tiny model, `production` on version 1."""
    with moto_server() as endpoint:
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10
        )
        for name, value in FAKE_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        s3.create_bucket(Bucket=TEST_BUCKET)
        registry = ModelRegistry(s3, TEST_BUCKET)
        files, draft = batch_sum_model()
        for _ in range(2):
            registry.publish(MODEL, files, draft)
        RegistryAdmin(registry).set_alias(MODEL, "production", 1)
        yield endpoint, registry


def function_environment(endpoint: str) -> dict[str, str]:
    """What Lambda gives a function it initializes for a snapshot, pointed at the moto server."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAAS_"))}
    return {
        **inherited,
        **FAKE_CREDENTIALS,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "MAAS_BUCKET": TEST_BUCKET,
        "MAAS_PROVIDER": "cpu",
        "MAAS_WARM_MODELS": MODEL,
        "MAAS_ALIAS_TTL": ALIAS_TTL_SECONDS,
        "POWERTOOLS_METRICS_NAMESPACE": "maas-tests",
    }


def reports(output: str) -> dict[str, dict[str, Any]]:
    found = [json.loads(line[len(REPORT) :]) for line in output.splitlines() if line.startswith(REPORT)]
    return {report.pop("stage"): report for report in found}


@pytest.mark.parametrize("function", ["infer", "async", "batch"])
def test_hooks_warm_the_snapshot_and_make_each_restored_copy_unique_and_current(
    published: tuple[str, ModelRegistry], function: str
) -> None:
    endpoint, registry = published
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.snapshot_process", function, MODEL],
        cwd=ROOT,
        env=function_environment(endpoint),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        # Given a function initialized and snapshotted with production on version 1
        before = ""
        while not (line := process.stdout.readline()).startswith(REPORT) and line:
            before += line
        assert line, f"the process ended before its snapshot: {before}"
        snapshot = json.loads(line[len(REPORT) :])
        # When the alias moves while the snapshot is cached, and then a copy is restored
        RegistryAdmin(registry).set_alias(MODEL, "production", 2)
        output, errors = process.communicate("restored\n", timeout=PROCESS_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, errors
    restored = reports(output)["restored"]

    # Then the snapshot held the WarmModels version, loaded (and run once) before it was taken
    assert snapshot["hooks_registered"] >= 2
    assert [MODEL, 1] in snapshot["loaded"]
    assert snapshot["cached_version"] == 1
    assert snapshot["http_app_built"]
    # and the restored copy draws its own random numbers, through a new S3 client
    assert restored["random_state_changed"] and restored["numpy_draw_changed"]
    assert restored["next_draw"] != restored["draw_the_snapshot_would_make"]
    assert restored["client_renewed"]
    # and its first request is answered by the version the alias points at now, within the alias TTL
    assert restored["first_request_version"] == 2
