"""How a version was made: the data it saw, the code and the package versions that built it.

Each value is best effort where the environment may lack it (no git, a missing package): lineage
describes a model and must never be the reason training fails.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import numpy as np

import maas
from maas.registry import Lineage
from maas.registry.manifest import HASH_CHUNK_BYTES

LINEAGE_PACKAGES = ("torch", "onnx", "onnxruntime", "numpy", "onnxscript")
GIT_TIMEOUT_SECONDS = 5.0


def dataset_hash(arrays: Iterable[np.ndarray]) -> str:
    """sha256 over each array's dtype, shape and C-order bytes, so a reshaped or re-split set differs."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks: a model's weights may be gigabytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def code_version(source: Path | None = None) -> str:
    """maas.__version__, plus the git commit of the code's checkout (and "-dirty") when there is one."""
    where = source or Path(maas.__file__).resolve().parent
    commit = _git(where, "rev-parse", "--short", "HEAD")
    if not commit:
        return maas.__version__
    dirty = _git(where, "status", "--porcelain", "--untracked-files=no")
    return f"{maas.__version__}+{commit}" + ("-dirty" if dirty else "")


def package_versions(names: Iterable[str] = LINEAGE_PACKAGES) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_lineage(recipe: str, data_hash: str, seed: int) -> Lineage:
    return Lineage(
        recipe=recipe,
        dataset_hash=data_hash,
        code_version=code_version(),
        packages=package_versions(),
        seed=seed,
    )


def _git(where: Path, *args: str) -> str:
    """stdout of a git command, or "" when git is missing, fails or `where` is not in a checkout."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
