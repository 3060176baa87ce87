"""The Makefile's deploy, teardown, serve and reset targets run what docs/deploy.md says, in that order, with
one stack name: read from `make -n` (which prints each recipe line and runs none), and the python3.12 check
run on its own with stand-in interpreters."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import ROOT

AWS_SETTINGS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")


def dry_run(target: str, *variables: str) -> list[str]:
    """The recipe lines `make -n` prints for `target`, continuation lines joined."""
    environment = {k: v for k, v in os.environ.items() if k not in AWS_SETTINGS and not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, *variables],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.replace("\\\n", " ").splitlines()


def positions(lines: list[str], *fragments: str) -> list[int]:
    """The index of the first line holding each fragment, in turn (-1 when none does)."""
    return [next((i for i, line in enumerate(lines) if fragment in line), -1) for fragment in fragments]


def test_make_deploy_builds_deploys_one_stack_points_the_cli_at_it_and_calls_it() -> None:
    lines = dry_run("deploy", "STACK=demo", "REGION=eu-west-1")

    found = positions(
        lines,
        "python3.12 -c",
        "sam build --parameter-overrides Architecture=x86_64",
        "sam deploy --stack-name demo --region eu-west-1 --capabilities CAPABILITY_IAM",
        "retained_bucket.py reconnect --stack demo",
        "maas use-stack demo --region eu-west-1",
        "maas config --get api_url",
    )

    assert -1 not in found, found
    assert found == sorted(found)
    deploy_line = lines[found[2]]
    assert "retained_bucket.py overrides --stack demo --stage dev --region eu-west-1" in deploy_line
    assert "Stage=dev Architecture=x86_64" in deploy_line
    assert "/v2/health/ready" in lines[found[5]]
    # One stack name throughout: every line naming a stack names this one.
    for line in lines:
        for flag in ("--stack-name ", "--stack ", "use-stack "):
            if flag in line:
                assert line.split(flag, 1)[1].split()[0] == "demo", line


def test_make_deploy_with_use_container_builds_in_sams_image_without_asking_for_python312() -> None:
    lines = dry_run("deploy", "REGION=eu-west-1", "USE_CONTAINER=1", "ARCH=arm64")

    build = [line for line in lines if "bin/sam build" in line]

    assert build == [
        "SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam build --use-container "
        "--container-env-var MAAS_LAYER_ARCH=arm64 --parameter-overrides Architecture=arm64"
    ]
    assert not any("python3.12 -c" in line for line in lines)


def test_make_deploy_passes_the_callers_parameters_after_its_own() -> None:
    lines = dry_run("deploy", "REGION=eu-west-1", "PARAMETERS=DataPlaneAuth=AWS_IAM WarmModels=seed-mlp")

    deploy_line = next(line for line in lines if "sam deploy" in line)

    assert deploy_line.rstrip().endswith(
        "Stage=dev Architecture=x86_64 $adopt DataPlaneAuth=AWS_IAM WarmModels=seed-mlp"
    )


@pytest.mark.parametrize("target", ["deploy", "teardown"])
def test_without_a_region_the_target_stops_first_naming_the_variable(target: str) -> None:
    lines = dry_run(target)
    check = next(i for i, line in enumerate(lines) if "which region?" in line)

    done = subprocess.run(
        ["bash", "-c", lines[check]], check=False, capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"make {target}: which region? make {target} REGION=us-east-1 (or set AWS_REGION)"
    ]
    assert all("bin/sam " not in line for line in lines[:check])


@pytest.mark.parametrize(
    ("python312", "status", "stderr_lines"),
    [
        # A pyenv shim for a version that is not selected: on PATH, but it does not run.
        ("echo 'pyenv: python3.12: command not found' >&2; exit 127", 1, 1),
        ("exit 0", 0, 0),
    ],
)
def test_the_python312_check_is_one_line_naming_both_fixes(
    tmp_path: Path, python312: str, status: int, stderr_lines: int
) -> None:
    lines = dry_run("deploy", "REGION=eu-west-1")
    check = next(line for line in lines if "python3.12 -c" in line)
    stand_in = tmp_path / "python3.12"
    stand_in.write_text(f"#!/bin/sh\n{python312}\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)

    done = subprocess.run(
        ["/bin/bash", "-c", check],
        check=False,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == status
    assert len(done.stderr.splitlines()) == stderr_lines
    if stderr_lines:
        assert "python3.12" in done.stderr and "USE_CONTAINER=1" in done.stderr


def test_make_teardown_says_what_is_kept_before_deleting_the_same_stack() -> None:
    lines = dry_run("teardown", "STACK=demo", "REGION=eu-west-1")

    kept, delete = positions(
        lines, "retained_bucket.py retained --stack demo --region eu-west-1", "sam delete --stack-name demo"
    )

    assert -1 < kept < delete


@pytest.mark.parametrize(
    ("variables", "command"),
    [
        ((), ".venv/bin/maas serve"),
        (("PORT=3001",), ".venv/bin/maas serve --port 3001"),
        (
            ("PORT=3001", "DATA_DIR=/tmp/maas-data"),
            ".venv/bin/maas serve --port 3001 --data-dir /tmp/maas-data",
        ),
    ],
)
def test_make_serve_passes_port_and_data_dir(variables: tuple[str, ...], command: str) -> None:
    assert dry_run("serve", *variables)[-1].strip() == command


def test_make_reset_is_maas_serve_reset_on_the_same_data_folder() -> None:
    assert dry_run("reset")[-1].strip() == ".venv/bin/maas serve --reset"
    assert dry_run("reset", "DATA_DIR=/tmp/maas-data")[-1].strip() == (
        ".venv/bin/maas serve --reset --data-dir /tmp/maas-data"
    )
