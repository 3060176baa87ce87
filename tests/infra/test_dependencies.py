"""pyproject.toml's runtime dependencies: shared/requirements.txt lists the same, and they declare every
distribution online maas imports by name (shared/requirements.lock, tested in test_layer_lock.py, pins what
the layer ships of them)."""

from __future__ import annotations

import tomllib
from importlib.metadata import packages_distributions

from infra.layer_imports import online_modules, third_party_imports
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


def test_every_distribution_online_maas_imports_by_name_is_a_declared_dependency() -> None:
    """maas.aws_clients imports botocore itself: declared, not left to arrive through boto3."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    declared = set(_by_name(project))
    shared = ROOT / "shared"
    imported = {name.split(".")[0] for name in third_party_imports(shared, online_modules(shared))}
    owners = packages_distributions()
    distributions = {canonicalize_name(owner) for top in imported for owner in owners.get(top, [top])}

    assert "botocore" in distributions  # the scan sees imports inside functions and at the top alike
    assert distributions - declared == set()
