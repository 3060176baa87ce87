"""shared/requirements.lock is closed and minimal: it covers everything the functions import at run time,
holds nothing they do not, and agrees with shared/Makefile and with how infra/lock_layer.py prunes.

Offline: the lock is read as text, and the functions' imports are taken from this environment, whose
versions may differ from the lock's; `make bench` (infra/build_bundle.py) imports the real layer alone."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from importlib.util import find_spec

import pytest
from infra.layer_imports import (
    OFFLINE_CALLERS_ONLY,
    PROBE_ENV,
    function_apps,
    online_modules,
    run_probe,
    third_party_imports,
)
from infra.layer_lock import (
    BOTOCORE_SERVICES,
    OFFLINE_ONLY_SUBPACKAGES,
    PRUNED_PATHS,
    canonical_name,
    read_lock,
)
from infra.lock_layer import LAYER_EXCLUDED_ROOTS, PLATFORMS, LockResolutionError, Resolved, lock_entries
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.paths import ROOT

SHARED = ROOT / "shared"
MAKEFILE = SHARED / "Makefile"
# Imported when present, through try/except ImportError, by a locked distribution; the layer leaves them out
# (build_bundle's import check runs the real layer without them).
OPTIONAL_IMPORTS = {
    "certifi": "botocore verifies TLS with its own cacert.pem without it",
    "brotli": "urllib3 decodes brotli-encoded responses only with it; S3 does not send them",
}


@pytest.fixture(scope="module")
def loaded_distributions() -> set[str]:
    """The distributions whose modules a fresh process holds after importing every function, every online
    maas module and every third-party module they name (lazy imports included)."""
    modules = online_modules(SHARED)
    names = modules + sorted(third_party_imports(SHARED, modules))
    loaded = run_probe(sys.executable, [SHARED, ROOT], function_apps(), names, isolated=False)
    # What the interpreter loads before any import of ours (site's .pth hooks of this environment).
    startup = subprocess.run(
        [sys.executable, "-B", "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        env=PROBE_ENV,
    )
    loaded -= set(json.loads(startup.stdout))
    owners = packages_distributions()
    found: set[str] = set()
    for top in {name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names) - {"maas", "__main__"}:
        if top in owners:
            found.update(canonical_name(owner) for owner in owners[top])
            continue
        spec = find_spec(top)
        origin = (spec.origin or "") if spec else ""
        assert "site-packages" not in origin, f"{top} ({origin}) belongs to no distribution"
    return found


def test_every_distribution_the_functions_import_is_locked(loaded_distributions: set[str]) -> None:
    assert loaded_distributions - set(read_lock()) - set(OPTIONAL_IMPORTS) == set()


def test_the_lock_holds_nothing_the_functions_do_not_import(loaded_distributions: set[str]) -> None:
    assert set(read_lock()) - loaded_distributions == set()


def test_the_lock_satisfies_every_direct_requirement_but_the_excluded_ones() -> None:
    lock = read_lock()
    lines = [line.split("#", 1)[0].strip() for line in (SHARED / "requirements.txt").read_text().splitlines()]
    for requirement in [Requirement(line) for line in lines if line]:
        name = canonical_name(requirement.name)
        if name in LAYER_EXCLUDED_ROOTS:
            assert name not in lock
            continue
        assert name in lock, f"{name} is a runtime dependency but not in the lock"
        assert requirement.specifier.contains(Version(lock[name].version)), (name, lock[name].version)


def test_huggingface_hub_stays_out_because_maas_never_asks_tokenizers_for_a_hub_download() -> None:
    assert "huggingface-hub" not in read_lock()
    calls = [name for name in _attribute_names(online_modules(SHARED)) if name == "from_pretrained"]
    assert calls == []


def test_boto3_is_reached_only_through_a_function_no_online_module_calls() -> None:
    callers = [
        module
        for module in online_modules(SHARED)
        for holder in OFFLINE_CALLERS_ONLY.values()
        if holder in _called_names(module)
    ]
    assert callers == []
    cli_calls = _called_names("maas.cli.job_bucket")
    assert set(OFFLINE_CALLERS_ONLY.values()) <= cli_calls  # the check looks at calls it can see


def test_the_botocore_models_kept_cover_every_client_maas_creates() -> None:
    tree = ast.parse((SHARED / "maas" / "aws_clients.py").read_text(encoding="utf-8"))
    services = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_botocore_client"
        and isinstance(node.args[0], ast.Constant)
    }
    assert services, "expected maas.aws_clients to create botocore clients by service name"
    assert services <= set(BOTOCORE_SERVICES)


def test_the_makefile_builds_what_the_checks_expect() -> None:
    variables = _makefile_variables()
    assert variables["OFFLINE_ONLY"] == list(OFFLINE_ONLY_SUBPACKAGES)
    assert variables["PRUNED"] == list(PRUNED_PATHS)
    assert variables["BOTOCORE_SERVICES"] == list(BOTOCORE_SERVICES)
    for arch, platforms in PLATFORMS.items():
        assert variables[f"PLATFORMS_{arch}"] == list(platforms)
    assert variables["MAAS_LAYER_ARCH"] == ["x86_64"]  # template.yaml's default Architecture
    recipe = MAKEFILE.read_text(encoding="utf-8")
    for flag in (
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--python-version 3.12",
        "--abi cp312",
    ):
        assert flag in recipe


def test_lock_entries_follow_dependencies_but_not_pruned_edges_or_excluded_roots() -> None:
    x86 = {
        "tokenizers": Resolved("tokenizers", "0.23", "t-x86", ("huggingface-hub",), requested=True),
        "huggingface-hub": Resolved("huggingface-hub", "2.4", "h", ("pyyaml",), requested=False),
        "pyyaml": Resolved("pyyaml", "6.0", "y-x86", (), requested=False),
        "pydantic": Resolved("pydantic", "2.14", "p", ("pydantic-core",), requested=True),
        "pydantic-core": Resolved("pydantic-core", "2.50", "c-x86", (), requested=False),
        "boto3": Resolved("boto3", "1.44", "b", ("botocore",), requested=True),
        "botocore": Resolved("botocore", "1.44", "o", (), requested=False),
    }
    arm = {**x86, "pydantic-core": Resolved("pydantic-core", "2.50", "c-arm", (), requested=False)}

    entries, left_out = lock_entries({"x86_64": x86, "arm64": arm})

    assert sorted(entries) == ["pydantic", "pydantic-core", "tokenizers"]
    assert entries["pydantic-core"].hashes == {"c-x86", "c-arm"}
    assert entries["pydantic-core"].via == {"pydantic"}
    assert [item.name for item in left_out] == ["boto3", "botocore", "huggingface-hub", "pyyaml"]
    reasons = {item.name: item.reason for item in left_out}
    assert "from_pretrained" in reasons["huggingface-hub"]
    assert reasons["pyyaml"] == "needed only by huggingface-hub"


def test_a_distribution_the_architectures_resolve_differently_cannot_be_locked() -> None:
    x86 = {"numpy": Resolved("numpy", "2.5.5", "n-x86", (), requested=True)}
    arm = {"numpy": Resolved("numpy", "2.4.6", "n-arm", (), requested=True)}

    with pytest.raises(LockResolutionError, match="one version of numpy"):
        lock_entries({"x86_64": x86, "arm64": arm})


def _makefile_variables() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z0-9_a-z]+)\s*[:?]?=\s*(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).split()
    return found


def _module_tree(module: str) -> ast.AST:
    path = SHARED.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return ast.parse(path.read_text(encoding="utf-8"))


def _attribute_names(modules: list[str]) -> list[str]:
    return [
        node.attr
        for module in modules
        for node in ast.walk(_module_tree(module))
        if isinstance(node, ast.Attribute)
    ]


def _called_names(module: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(_module_tree(module)):
        if isinstance(node, ast.Call):
            function = node.func
            names.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", ""))
    return names
