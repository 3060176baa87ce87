"""Tiny real wheel files and a lock for them, so the layer's Makefile can run pip offline in a test."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BuiltWheel:
    name: str
    version: str
    path: Path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def build_wheel(
    folder: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    module_text: str = "",
    requires: tuple[str, ...] = (),
) -> BuiltWheel:
    """A wheel holding one package, `name`, whose __init__.py is `module_text`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-{tag}.whl"
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    purelib = "true" if tag.endswith("-any") else "false"
    wheel = f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
    files = {
        f"{name}/__init__.py": module_text,
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": wheel,
    }
    record = "".join(f"{file},,\n" for file in files) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
        archive.writestr(f"{dist_info}/RECORD", record)
    return BuiltWheel(name, version, path)


def lock_text(wheels: list[BuiltWheel]) -> str:
    """A lock in shared/requirements.lock's format: one entry per name, every wheel's hash under it."""
    by_name: dict[str, list[BuiltWheel]] = {}
    for wheel in wheels:
        by_name.setdefault(wheel.name, []).append(wheel)
    lines = ["# a test lock"]
    for name, versions in sorted(by_name.items()):
        lines.append(f"{name}=={versions[0].version} \\")
        hashes = [f"    --hash=sha256:{wheel.sha256}" for wheel in versions]
        lines += [line + " \\" for line in hashes[:-1]] + [hashes[-1]]
    return "\n".join(lines) + "\n"
