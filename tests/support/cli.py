"""The CLI as its tests run it: one command through `maas.cli.main`, and what a refused one must print."""

from __future__ import annotations

import pytest

from maas.cli import main


def fail(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail with a domain error before printing anything; return its message."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    return captured.err
