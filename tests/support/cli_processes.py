"""The `maas` command as a user's shell runs it: a process of its own, with none of the developer's AWS or
maas settings, a home and config folder of the test's own (so no ~/.aws and no saved stack), and this
checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.paths import ROOT

SHARED = ROOT / "shared"


def bare_environment(home: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """No AWS_* or MAAS_* variable of the developer's; HOME, XDG_CONFIG_HOME and MAAS_DATA_DIR the test's."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MAAS_", "XDG_CONFIG_HOME", "PYTHONPATH"))
    }
    return {
        **kept,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "MAAS_DATA_DIR": str(data_dir),
        # No instance metadata lookup: "no AWS configuration" must fail at once, not after IMDS timeouts.
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": str(SHARED),
        **extra,
    }


def run_maas(environ: Mapping[str, str], *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m maas.cli ARGV...` to completion, its output captured."""
    return run_python(environ, "-m", "maas.cli", *argv, cwd=cwd)


def run_python(environ: Mapping[str, str], *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python ARGV...` (`-c CODE`, `-m MODULE`) to completion, its output captured."""
    return subprocess.run(
        [sys.executable, *argv],
        env=dict(environ),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_maas_into_closed_pipe(environ: Mapping[str, str], *argv: str, cwd: Path) -> tuple[int, str]:
    """`maas ARGV... | reader` where the reader has gone before the first line: the status and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "maas.cli", *argv],
        env=dict(environ),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read()
    return process.wait(timeout=120), stderr
