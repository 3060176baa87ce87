"""What `make serve` does on a first run: an empty store gets seed-mlp, and the printed curl works."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from typing import Any

import pytest

from maas.cli.serve import example_seeder, seed_registry
from maas.local import LocalStack, StoreChoice, choose_store
from tests.support.aws import moto_server, use_endpoint

# Torch sets these once per process when the seeder trains (KMP_* on import, TORCHINDUCTOR_CACHE_DIR on
# export): its doing, not the stack's, and whether they exist already depends on which test ran first.
TORCH_PROCESS_VARIABLES = ("KMP_", "TORCHINDUCTOR_")


def environment_without_torch() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(TORCH_PROCESS_VARIABLES)}


def test_an_empty_store_is_seeded_once_and_the_environment_is_restored(
    isolated_env: pytest.MonkeyPatch, http: Any
) -> None:
    before = environment_without_torch()

    with LocalStack(
        port=0, embedded=True, bucket="seeding-check", seeder=example_seeder(overrides={"epochs": 2})
    ) as stack:
        assert [(m.name, m.version) for m in stack.seeded] == [("seed-mlp", 1)]
        assert seed_registry(stack.registry, overrides={"epochs": 2}) == []
        production = stack.registry.aliases("seed-mlp")["production"]
        assert (production.version, len(production.history)) == (1, 1)  # set once, by the first seeding
        assert stack.store.kind == "embedded"
        assert stack.store.endpoint_url is not None
        assert stack.store.endpoint_url in stack.banner()

        ready = http("GET", f"{stack.url}/v2/models/seed-mlp/versions/1/ready")
        assert ready.status == 200, ready.body

        if shutil.which("curl"):
            printed = stack.curl_example().replace("\\\n", " ")
            completed = subprocess.run(
                [*shlex.split(printed), "--fail", "--max-time", "30"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert completed.returncode == 0, completed.stderr
            assert '"model_version":"1"' in completed.stdout.replace(" ", "")

    assert environment_without_torch() == before


@pytest.mark.parametrize(
    ("environ", "embedded", "expected"),
    [
        ({}, False, StoreChoice("embedded", "maas-models")),
        ({"MAAS_BUCKET": "mine"}, True, StoreChoice("embedded", "mine")),
        (
            {"AWS_ENDPOINT_URL": "http://localhost:4566", "MAAS_BUCKET": "mine"},
            False,
            StoreChoice("endpoint", "mine", "http://localhost:4566"),
        ),
        ({"AWS_ENDPOINT_URL": "http://localhost:9000"}, True, StoreChoice("embedded", "maas-models")),
    ],
)
def test_store_selection(
    isolated_env: pytest.MonkeyPatch, environ: dict[str, str], embedded: bool, expected: StoreChoice
) -> None:
    assert choose_store(environ, embedded=embedded) == expected


def test_a_bucket_with_credentials_selects_real_aws(isolated_env: pytest.MonkeyPatch) -> None:
    isolated_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    isolated_env.setenv("AWS_SECRET_ACCESS_KEY", "secret")

    assert choose_store({"MAAS_BUCKET": "prod-models"}) == StoreChoice("aws", "prod-models")


def test_an_endpoint_store_gets_its_bucket_created(isolated_env: pytest.MonkeyPatch, http: Any) -> None:
    with moto_server() as endpoint:
        use_endpoint(isolated_env, endpoint)

        with LocalStack(port=0, bucket="endpoint-check") as stack:
            assert stack.store == StoreChoice("endpoint", "endpoint-check", endpoint)
            assert stack.registry.versions("seed-mlp") == []
            assert http("GET", f"{stack.url}/v2/health/live").status == 200
