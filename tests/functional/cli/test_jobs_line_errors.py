"""A bad line, from the batch function to `maas jobs status`: its line is named once, not twice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from maas.cli import main
from maas.registry import Manifest
from tests.support.functions import start_function
from tests.support.jobs import Context, job_event, read_lines, read_status, submit

GOOD_ROW = json.dumps([0.5] * 10)


@pytest.mark.usefixtures("cli_env")
def test_a_line_error_names_its_line_once_in_the_output_the_status_and_the_cli(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = "jobs/seed-mlp/bad-lines/"
    lines = [GOOD_ROW] * 5 + ["{not json", GOOD_ROW]
    submit(s3, folder + "input.jsonl", ("\n".join(lines) + "\n").encode())
    batch = start_function(monkeypatch, "batch")

    batch.lambda_handler(job_event(folder + "input.jsonl"), Context())

    message = "expected one JSON value per line, got text that is not JSON"
    assert read_lines(s3, folder + "output.jsonl")[5] == {"error": f"line 6: {message}"}
    status = read_status(s3, folder)
    assert [(error.line, error.error) for error in status.errors] == [(6, message)]
    assert main(["jobs", "status", "seed-mlp/bad-lines"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert f"  line 6: {message}" in shown
    assert not [line for line in shown if line.count("line 6") > 1]
