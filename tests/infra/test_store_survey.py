"""The store survey's probes (infra/store_survey.py) against the moto server `make serve` runs: they pass
where moto behaves as S3, and the restart check fails when the store forgot what it was given."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.store_survey import PROBES, main

from tests.support.aws import moto_server

# Races are left to the survey itself: on a store without atomic conditional writes (moto 5.2.6 stock)
# their outcome depends on thread scheduling, and a test must not.
DETERMINISTIC_PROBES = [name for name in PROBES if not name.startswith("race")]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_every_deterministic_probe_passes_against_the_embedded_moto_server(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [option for name in DETERMINISTIC_PROBES for option in ("--only", name)]

    status = main(["probe", "--endpoint", endpoint, *arguments])

    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0].strip() for line in lines] == DETERMINISTIC_PROBES
    assert all("  PASS  " in line for line in lines), lines
    assert status == 0


def test_a_race_probe_reports_its_rounds(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["probe", "--endpoint", endpoint, "--only", "race if-match", "--rounds", "2"])

    assert "2 rounds x 16 writers" in capsys.readouterr().out


def test_data_kept_by_the_store_passes_the_restart_check_and_data_lost_fails_it(
    endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    assert main(["persist-write", "--endpoint", endpoint, "--state", str(state)]) == 0
    assert "now restart" in capsys.readouterr().out

    kept = main(["persist-check", "--endpoint", endpoint, "--state", str(state)])
    kept_lines = capsys.readouterr().out.splitlines()
    # moto holds its state per process: a reset is what a restart of the in-memory store amounts to.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    lost = main(["persist-check", "--endpoint", endpoint, "--state", str(state)])
    lost_lines = capsys.readouterr().out.splitlines()

    assert kept == 0 and all("  PASS  " in line for line in kept_lines), kept_lines
    assert lost == 1
    assert any(line.startswith("kept small.json") and "  FAIL  " in line for line in lost_lines)
    assert any(line.startswith("kept SQS message") and "  FAIL  " in line for line in lost_lines)


def test_the_large_object_measure_reports_each_phase_of_the_server_it_watches(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The moto server runs in this process, so this process's memory is the server's.
    status = main(["large", "--endpoint", endpoint, "--pid", str(os.getpid()), "--mib", "32"])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert [line.split("  ")[0] for line in lines] == ["multipart upload", "ranged GETs", "whole GET"]
    assert "2 parts of 16 MiB" in lines[0] and "32 MiB read" in lines[2]
