"""What the functions import at run time: maas's online modules and every third-party module they name.

Two checks use it. tests/infra/test_layer_lock.py imports all of it in a fresh process of the development
environment and asks which distributions the loaded modules come from: each must be in the lock.
infra/build_bundle.py imports all of it with a built layer as the only site-packages (CPython 3.12, `-S`):
the layer must hold everything it needs. Third-party imports are read from the source (imports inside
functions included, `if TYPE_CHECKING:` blocks left out), since maas defers several (tokenizers, jinja2)
until a model needs them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from infra.layer_lock import LAYER_SOURCE, OFFLINE_ONLY_SUBPACKAGES

FUNCTIONS_SOURCE = LAYER_SOURCE.parent / "functions"
# Imported here in a fresh interpreter: the functions' modules, then every name given, then the AWS clients
# the functions create (botocore loads each service's model only then). Prints the loaded module names.
PROBE = """
import importlib, importlib.util, json, pathlib, sys
names = json.loads(sys.argv[1])
for app in names["apps"]:
    spec = importlib.util.spec_from_file_location("app_" + pathlib.Path(app).parent.name, app)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
for name in names["modules"]:
    importlib.import_module(name)
from maas import aws_clients
for make in (aws_clients.s3_client, aws_clients.kms_client, aws_clients.secrets_client):
    make()
print(json.dumps(sorted(sys.modules)))
"""
# Third-party imports of online modules that only offline callers reach, and the maas function that holds
# each: tests/infra/test_layer_lock.py checks that nothing online calls it.
OFFLINE_CALLERS_ONLY = {"boto3": "s3_transfer_client"}
PROBE_ENV = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "LANG": "C.UTF-8"}


def online_modules(package_root: Path) -> list[str]:
    """Every module of the maas package at `package_root` (the folder holding maas/) but the offline ones."""
    offline = tuple(sub.replace("/", ".") for sub in OFFLINE_ONLY_SUBPACKAGES)
    names: list[str] = []
    for path in sorted((package_root / "maas").rglob("*.py")):
        parts = list(path.relative_to(package_root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if not any(name == sub or name.startswith(sub + ".") for sub in offline):
            names.append(name)
    return names


def third_party_imports(package_root: Path, modules: Iterable[str]) -> set[str]:
    """The non-maas modules the given maas modules import, anywhere but under `if TYPE_CHECKING:`."""
    found: set[str] = set()
    for module in modules:
        path = package_root.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        found |= _imports(ast.parse(path.read_text(encoding="utf-8")))
    stdlib = sys.stdlib_module_names
    skipped = {*stdlib, "maas", *OFFLINE_CALLERS_ONLY}
    return {name for name in found if name.split(".")[0] not in skipped}


def function_apps(functions_root: Path = FUNCTIONS_SOURCE) -> list[Path]:
    return sorted(functions_root.glob("*/app.py"))


def run_probe(
    python: str, path: Sequence[Path], apps: Sequence[Path], modules: Sequence[str], *, isolated: bool
) -> set[str]:
    """The modules loaded after importing `apps` and `modules` in a fresh `python` with `path` first on
    sys.path; `isolated`: -I -S, so nothing but the standard library and `path` can be imported."""
    flags = ["-B", "-I", "-S"] if isolated else ["-B"]
    prefix = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}\n"
    document = json.dumps({"apps": [str(a) for a in apps], "modules": list(modules)})
    done = subprocess.run(
        [python, *flags, "-c", prefix + PROBE, document],
        capture_output=True,
        text=True,
        check=False,
        env=PROBE_ENV,
    )
    if done.returncode != 0:
        raise ImportError(f"importing the functions with {python} failed:\n{done.stderr[-4000:]}")
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in _nodes_outside_type_checking(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _nodes_outside_type_checking(tree: ast.AST) -> list[ast.AST]:
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
