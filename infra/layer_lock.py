"""MaasLayer's lock: every distribution the layer ships, at one version, with the sha256 of each wheel.

shared/requirements.lock is a pip requirements file that `pip install --no-deps --require-hashes` takes as
it is (shared/Makefile, the `build-MaasLayer` target `sam build` runs). infra/lock_layer.py writes it; this
module reads it and checks a built layer against it, for the tests and for infra/build_bundle.py.
"""

from __future__ import annotations

import _imp
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_SOURCE = ROOT / "shared"
LOCK_PATH = LAYER_SOURCE / "requirements.lock"
# What the layer's direct requirements are read from (the runtime dependencies of pyproject.toml).
REQUIREMENTS_PATH = LAYER_SOURCE / "requirements.txt"
# maas subpackages no function imports (the import-linter contract `online-stays-light` keeps it so):
# shared/Makefile leaves them out of the layer.
OFFLINE_ONLY_SUBPACKAGES = ("maas/training", "maas/local", "maas/cli")
# Parts of locked distributions shared/Makefile deletes after installing them: onnxruntime's offline model
# tooling (graph fusions, quantization, conversion scripts), which `import onnxruntime` and an
# InferenceSession never import; they alone need the flatbuffers, packaging and protobuf distributions the
# lock leaves out. bin/: console scripts pip --target writes, which nothing on Lambda runs.
PRUNED_PATHS = ("onnxruntime/tools", "onnxruntime/transformers", "onnxruntime/quantization", "bin")
# The AWS services whose API models shared/Makefile keeps in botocore/data: those maas.aws_clients creates
# clients for (S3; KMS and Secrets Manager for manifest signing; Step Functions to start a sharded job), and
# STS for credential providers that assume a role.
BOTOCORE_SERVICES = ("kms", "s3", "secretsmanager", "stepfunctions", "sts")
# Files of shared/ that build the layer and must not end up in it.
BUILD_FILES = ("Makefile", "requirements.lock", "requirements.txt", "layer_bytecode.py")
# The bytecode shared/layer_bytecode.py writes: CPython 3.12's (the runtime's), whatever Python checks it.
RUNTIME_PYC_TAG = "cpython-312"
RUNTIME_PYC_MAGIC = bytes.fromhex("cb0d0d0a")
# PEP 552's flags word: hash-based, source not checked on import.
UNCHECKED_HASH_FLAGS = 0b01

_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:(?P<digest>[0-9a-f]{64})")


class LockError(ValueError):
    """The lock file is not a closed list of pinned, hashed distributions."""


@dataclass(frozen=True, slots=True)
class LockedDistribution:
    name: str
    version: str
    # One sha256 per wheel the lock accepts: a platform wheel per architecture, or one pure wheel.
    hashes: tuple[str, ...]


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK_PATH) -> dict[str, LockedDistribution]:
    """The lock's distributions by canonical name; refuses a line that is not `name==version` with hashes."""
    entries: dict[str, LockedDistribution] = {}
    for requirement in _logical_lines(path.read_text(encoding="utf-8")):
        match = _LINE.match(requirement)
        if match is None:
            raise LockError(f"{path.name}: expected `name==version --hash=sha256:...`, got {requirement!r}")
        hashes = tuple(m.group("digest") for m in _HASH.finditer(requirement))
        if not hashes:
            raise LockError(f"{path.name}: expected at least one --hash=sha256 for {match.group('name')}")
        name = canonical_name(match.group("name"))
        if name in entries:
            raise LockError(f"{path.name}: {name} is listed twice")
        entries[name] = LockedDistribution(name, match.group("version"), hashes)
    if not entries:
        raise LockError(f"{path.name}: expected at least one distribution, found none")
    return entries


def installed_distributions(site: Path) -> dict[str, str]:
    """The distributions installed in `site` (a layer's python/ folder), from their .dist-info METADATA."""
    found: dict[str, str] = {}
    for metadata in sorted(site.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8"))
        found[canonical_name(headers["Name"])] = headers["Version"]
    return found


def layer_problems(site: Path, lock: Mapping[str, LockedDistribution]) -> list[str]:
    """What keeps the layer at `site` from being the lock plus maas's online packages; [] when nothing."""
    problems: list[str] = []
    installed = installed_distributions(site)
    for name, version in sorted(installed.items()):
        if name not in lock:
            problems.append(f"{name} {version} is in the layer but not in the lock")
        elif lock[name].version != version:
            problems.append(f"{name} is {version} in the layer, expected {lock[name].version} (the lock)")
    missing = [name for name in lock if name not in installed]
    problems += [f"{name} {lock[name].version} is in the lock but not in the layer" for name in missing]
    if not (site / "maas" / "__init__.py").is_file():
        problems.append("expected the maas package in the layer, found none")
    offline = [sub for sub in OFFLINE_ONLY_SUBPACKAGES if (site / sub).exists()]
    problems += [f"{sub} is offline only, but it is in the layer" for sub in offline]
    pruned = [path for path in PRUNED_PATHS if (site / path).exists()]
    problems += [f"{path} is pruned, but it is in the layer" for path in pruned]
    build_files = [name for name in BUILD_FILES if (site / name).exists()]
    problems += [f"{name} builds the layer, but it is in it" for name in build_files]
    models = site / "botocore" / "data"
    services = sorted(p.name for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    if "botocore" in lock and services != sorted(BOTOCORE_SERVICES):
        problems.append(f"expected botocore's models for {sorted(BOTOCORE_SERVICES)} alone, got {services}")
    problems += bytecode_problems(site)
    return problems


def bytecode_problems(site: Path) -> list[str]:
    """Each compiled file in the layer that is not CPython 3.12's unchecked-hash pyc of the source beside it.

    On Lambda nothing rechecks an unchecked-hash pyc against its source, so a stale one would run instead
    of the code shipped; a timestamp pyc or another version's is a cache of the build machine."""
    problems: list[str] = []
    for pyc in sorted(site.rglob("*.py[co]")):
        name = str(pyc.relative_to(site))
        stem, _, tag = pyc.name.removesuffix(".pyc").rpartition(".")
        source = pyc.parent.parent / f"{stem}.py"
        if pyc.parent.name != "__pycache__" or tag != RUNTIME_PYC_TAG or pyc.suffix != ".pyc":
            problems.append(f"{name} is not CPython 3.12 bytecode in a __pycache__ folder")
        elif not source.is_file():
            problems.append(f"{name} has no source beside it")
        else:
            problems += [f"{name} {problem}" for problem in _header_problems(pyc, source)]
    return problems


def _header_problems(pyc: Path, source: Path) -> list[str]:
    with pyc.open("rb") as file:
        header = file.read(16)
    if header[:4] != RUNTIME_PYC_MAGIC:
        return [f"is not CPython 3.12 bytecode (magic {header[:4].hex()})"]
    if int.from_bytes(header[4:8], "little") != UNCHECKED_HASH_FLAGS:
        return ["is not an unchecked-hash pyc (a timestamp or checked one is a cache of the build machine)"]
    key = int.from_bytes(RUNTIME_PYC_MAGIC, "little")
    if header[8:16] != _imp.source_hash(key, source.read_bytes()):
        return [f"was compiled from another source than {source.name}"]
    return []


def _logical_lines(text: str) -> list[str]:
    """The requirement lines of a pip requirements file: continuations joined, comments and blanks dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(" ".join(current.split()))
        current = ""
    if current.strip():
        lines.append(" ".join(current.split()))
    return lines
