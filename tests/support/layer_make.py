"""Run shared/Makefile's build-MaasLayer as `sam build` runs it: in a scratch copy of shared/, with
ARTIFACTS_DIR set, pip pointed at a folder of tiny real wheels (tests/support/wheels.py) and no index."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

SHARED = ROOT / "shared"


def scratch_copy(tmp_path: Path, lock: str) -> Path:
    """shared/ as the custom-make workflow copies it, with the test lock in place of the real one."""
    scratch = tmp_path / "scratch"
    shutil.copytree(SHARED, scratch, ignore=shutil.ignore_patterns(".aws-sam", ".git"))
    (scratch / "requirements.lock").write_text(lock, encoding="utf-8")
    return scratch


def make_layer(
    scratch: Path, artifacts: Path, wheelhouse: Path, arch: str, *, bytecode_python: str = "true"
) -> subprocess.CompletedProcess[str]:
    """`bytecode_python`: the Makefile's BYTECODE_PYTHON; by default `true`, which leaves the bytecode step
    out (it imports the layer's maas, whose dependencies a test lock of tiny wheels lacks)."""
    env = {
        **os.environ,
        "ARTIFACTS_DIR": str(artifacts),
        "MAAS_LAYER_ARCH": arch,
        "PYTHON": sys.executable,
        # Only the test's wheels: no index, no configuration of this machine's pip.
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "BYTECODE_PYTHON": bytecode_python,
    }
    return subprocess.run(
        ["make", "--makefile", str(scratch / "Makefile"), "build-MaasLayer"],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
