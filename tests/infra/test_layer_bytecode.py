"""The layer ships CPython 3.12 bytecode for exactly the modules the functions import, as unchecked-hash pycs
of the layer's own sources (shared/layer_bytecode.py, the last step of shared/Makefile's build-MaasLayer).

Offline: a stand-in maas package and tiny real wheels take the place of the real ones, whose dependencies
would need the package index; `make bench` (benchmarks/test_bundle_size.py) compiles the real layer."""

from __future__ import annotations

import _imp
import shutil
import sys
from pathlib import Path

import pytest
from infra.layer_lock import (
    RUNTIME_PYC_MAGIC,
    UNCHECKED_HASH_FLAGS,
    bytecode_problems,
    layer_problems,
    read_lock,
)
from infra.runtime_python import find_python312

from tests.support.layer_make import make_layer, scratch_copy
from tests.support.wheels import BuiltWheel, build_wheel, lock_text

PYTHON312 = find_python312()
needs_python312 = pytest.mark.skipif(PYTHON312 is None, reason="no working CPython 3.12 on this machine")
# A maas package whose modules import `eager` at import time and `lazy` inside a function only (as maas
# does tokenizers and jinja2), and name `unused` for type checking only.
STAND_IN_MAAS = {
    "maas/__init__.py": "",
    "maas/apps/__init__.py": "import eager\n",
    "maas/apps/infer.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import unused\n"
        "def first_request() -> object:\n    import lazy\n    return lazy\n"
    ),
}
PYC = "cpython-312.pyc"


@pytest.fixture
def wheels(tmp_path: Path) -> list[BuiltWheel]:
    house = tmp_path / "wheelhouse"
    return [
        build_wheel(house, "eager", "1.0", module_text="LOADED = True"),
        build_wheel(house, "lazy", "1.0", tag="cp312-cp312-manylinux2014_x86_64", module_text="ARCH = 'x86'"),
        build_wheel(
            house, "lazy", "1.0", tag="cp312-cp312-manylinux2014_aarch64", module_text="ARCH = 'arm'"
        ),
        build_wheel(house, "unused", "1.0"),
    ]


def stand_in_scratch(tmp_path: Path, wheels: list[BuiltWheel], maas: dict[str, str]) -> Path:
    scratch = scratch_copy(tmp_path, lock_text(wheels))
    shutil.rmtree(scratch / "maas")
    for name, text in maas.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text, encoding="utf-8")
    return scratch


def compiled(site: Path) -> list[str]:
    return sorted(str(pyc.relative_to(site)) for pyc in site.rglob("*.pyc"))


@needs_python312
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_modules_the_functions_import_are_compiled_and_nothing_else(
    tmp_path: Path, wheels: list[BuiltWheel], arch: str
) -> None:
    scratch = stand_in_scratch(tmp_path, wheels, STAND_IN_MAAS)
    assert PYTHON312 is not None

    done = make_layer(scratch, tmp_path / "artifacts", wheels[0].path.parent, arch, bytecode_python=PYTHON312)

    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "artifacts" / "python"
    assert compiled(site) == [
        f"eager/__pycache__/__init__.{PYC}",
        f"lazy/__pycache__/__init__.{PYC}",
        f"maas/__pycache__/__init__.{PYC}",
        f"maas/apps/__pycache__/__init__.{PYC}",
        f"maas/apps/__pycache__/infer.{PYC}",
    ]
    for pyc in site.rglob("*.pyc"):
        header = pyc.read_bytes()[:8]
        assert header == RUNTIME_PYC_MAGIC + UNCHECKED_HASH_FLAGS.to_bytes(4, "little"), pyc
    # Each pyc is of the layer's own source (the other architecture's lazy/ differs), and nothing the
    # build used is left in the layer: not layer_bytecode.py, not the probe's packages.
    assert layer_problems(site, read_lock(scratch / "requirements.lock")) == []
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == [
        "eager",
        "lazy",
        "maas",
        "unused",
    ]
    assert "5 modules compiled" in done.stdout


@pytest.mark.skipif(
    sys.version_info[:2] == (3, 12), reason="needs a Python other than 3.12 running the tests"
)
def test_another_python_leaves_the_layer_without_bytecode_and_says_so_once(
    tmp_path: Path, wheels: list[BuiltWheel]
) -> None:
    scratch = stand_in_scratch(tmp_path, wheels, STAND_IN_MAAS)

    done = make_layer(
        scratch, tmp_path / "artifacts", wheels[0].path.parent, "x86_64", bytecode_python=sys.executable
    )

    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert warnings == [
        f"warning: the layer ships no bytecode: {sys.executable} is cpython {running}, "
        "and Lambda's python3.12 runtime reads CPython 3.12 bytecode only"
    ]
    site = tmp_path / "artifacts" / "python"
    assert compiled(site) == []
    assert list(site.rglob("__pycache__")) == []


@needs_python312
def test_a_maas_module_that_does_not_import_with_the_layer_alone_fails_the_build(
    tmp_path: Path, wheels: list[BuiltWheel]
) -> None:
    unlocked = [wheel for wheel in wheels if wheel.name != "eager"]
    scratch = stand_in_scratch(tmp_path, unlocked, STAND_IN_MAAS)
    assert PYTHON312 is not None

    done = make_layer(
        scratch, tmp_path / "artifacts", wheels[0].path.parent, "x86_64", bytecode_python=PYTHON312
    )

    assert done.returncode != 0
    assert "importing the layer's modules failed" in done.stderr
    assert "No module named 'eager'" in done.stderr


SOURCE = b"VALUE = 1\n"


def runtime_pyc(flags: int, source: bytes) -> bytes:
    digest = _imp.source_hash(int.from_bytes(RUNTIME_PYC_MAGIC, "little"), source)
    return RUNTIME_PYC_MAGIC + flags.to_bytes(4, "little") + digest + b"\xe3"


@pytest.mark.parametrize(
    ("pyc_path", "content", "problem"),
    [
        (f"pkg/__pycache__/module.{PYC}", runtime_pyc(UNCHECKED_HASH_FLAGS, SOURCE), None),
        (
            f"pkg/__pycache__/module.{PYC}",
            runtime_pyc(0b11, SOURCE),
            "is not an unchecked-hash pyc (a timestamp or checked one is a cache of the build machine)",
        ),
        (
            f"pkg/__pycache__/module.{PYC}",
            RUNTIME_PYC_MAGIC + bytes(12),
            "is not an unchecked-hash pyc (a timestamp or checked one is a cache of the build machine)",
        ),
        (
            f"pkg/__pycache__/module.{PYC}",
            runtime_pyc(UNCHECKED_HASH_FLAGS, b"VALUE = 2\n"),
            "was compiled from another source than module.py",
        ),
        (
            f"pkg/__pycache__/module.{PYC}",
            bytes.fromhex("a70d0d0a") + bytes(12),
            "is not CPython 3.12 bytecode (magic a70d0d0a)",
        ),
        (
            "pkg/__pycache__/module.cpython-311.pyc",
            runtime_pyc(UNCHECKED_HASH_FLAGS, SOURCE),
            "is not CPython 3.12 bytecode in a __pycache__ folder",
        ),
        ("pkg/module.pyc", runtime_pyc(UNCHECKED_HASH_FLAGS, SOURCE), "is not CPython 3.12 bytecode in a"),
        (f"pkg/__pycache__/gone.{PYC}", runtime_pyc(UNCHECKED_HASH_FLAGS, SOURCE), "has no source beside it"),
    ],
)
def test_only_runtime_unchecked_hash_pycs_of_the_source_beside_them_are_accepted(
    tmp_path: Path, pyc_path: str, content: bytes, problem: str | None
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_bytes(SOURCE)
    pyc = tmp_path / pyc_path
    pyc.parent.mkdir(parents=True, exist_ok=True)
    pyc.write_bytes(content)

    problems = bytecode_problems(tmp_path)

    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(f"{pyc_path} {problem}")


def test_a_python_that_is_not_cpython312_is_not_taken_for_it(tmp_path: Path) -> None:
    assert find_python312(str(tmp_path / "python3.12")) is None
    if sys.version_info[:2] != (3, 12):
        assert find_python312(sys.executable) is None
    if PYTHON312 is not None:
        assert find_python312(PYTHON312) == PYTHON312
