"""The Lambda layer ships exactly the runtime dependencies pyproject.toml declares."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import ROOT


def _by_name(lines: list[str]) -> dict[str, Requirement]:
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in requirements}


def test_layer_requirements_equal_the_project_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    layer_lines = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / "shared" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    ]
    declared = _by_name(project)
    shipped = _by_name([line for line in layer_lines if line])

    assert sorted(shipped) == sorted(declared)
    for name, requirement in declared.items():
        assert shipped[name].specifier == requirement.specifier, name
        assert shipped[name].extras == requirement.extras, name
        assert str(shipped[name].marker) == str(requirement.marker), name
