"""Byte-compile the modules the functions import into a built MaasLayer: shared/Makefile's last step.

Lambda's /opt is read-only, so a layer without bytecode compiles every module it imports on every cold start
(about half of a function's import time on CPython 3.12). Compiling the whole layer would add 20.8 MB, so
this imports what the functions may import (every maas module in the layer, every third-party module they
name, imports inside functions included, and the AWS clients they create) in a fresh `-I -S` process that
sees nothing but the layer, and compiles exactly the modules that process loaded from it. The pycs are
unchecked-hash: the layer never changes once published, and a zip round trip keeps mtimes at 2 s resolution,
which a timestamp pyc would compare against. Bytecode is specific to a Python version, so this needs CPython
3.12, the runtime's; under another Python it warns and leaves the layer as it is (it still works, and
compiles at run time). It runs from the scratch copy of shared/ and is not part of the layer.

    python3.12 layer_bytecode.py SITE ARCH [-- PIP_INSTALL_COMMAND...]

SITE is the layer's python/ folder, ARCH its architecture (x86_64 or arm64). A layer of the other
architecture than this machine's cannot be imported here (its compiled extensions do not load), so the
command after `--` installs the same lock for this machine into a temporary folder (`--target` is added),
which the import then uses for third-party packages; the pure-Python files it finds there are the same
files in the layer, and the layer's own copies are compiled.
"""

from __future__ import annotations

import ast
import json
import platform
import py_compile
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from importlib.util import cache_from_source
from pathlib import Path

RUNTIME_PYTHON = (3, 12)
# Where Lambda mounts the layer's python/ folder: the file name recorded in each pyc, so that two builds of
# the same sources write the same bytes (the runtime replaces it with the real path on import anyway).
LAMBDA_SITE = "/opt/python"
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# The AWS clients the functions create at import (maas.aws_clients): botocore loads each service's model,
# parsers and signers only then.
CLIENT_FACTORIES = ("s3_client", "kms_client", "secrets_client")
# Enough for botocore to build clients without a network: credentials from the environment, as Lambda gives
# them, and no instance metadata lookup.
PROBE_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "layer-bytecode",
    "AWS_SECRET_ACCESS_KEY": "layer-bytecode",
    "AWS_EC2_METADATA_DISABLED": "true",
    "PYTHONDONTWRITEBYTECODE": "1",
}
PROBE_TIMEOUT_S = 600.0
# Run with `-I -S -B` and the probe's sys.path first: imports the modules named in argv[1] (a JSON list)
# and creates the functions' AWS clients, then prints the file of every module loaded.
PROBE = """
import importlib, json, sys
path, names, factories = json.loads(sys.argv[1])
sys.path[:0] = path
for name in names:
    importlib.import_module(name)
if "maas.aws_clients" in sys.modules:
    for factory in factories:
        getattr(sys.modules["maas.aws_clients"], factory)()
files = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
print(json.dumps(sorted({file for file in files if isinstance(file, str)})))
"""


class LayerImportError(RuntimeError):
    """The layer's modules did not import with the layer alone."""


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    pip_install = args[args.index("--") + 1 :] if "--" in args else []
    positional = args[: args.index("--")] if "--" in args else args
    if len(positional) != 2 or positional[1] not in ARCHITECTURES.values():
        print("usage: layer_bytecode.py SITE x86_64|arm64 [-- PIP_INSTALL_COMMAND...]", file=sys.stderr)
        return 2
    site, arch = Path(positional[0]).resolve(), positional[1]
    skipped = why_not_compiled(arch, pip_install)
    if skipped:
        print(f"warning: the layer ships no bytecode: {skipped}", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="maas-layer-probe-") as folder:
        probe_path = [site]
        if ARCHITECTURES.get(platform.machine().lower()) != arch:
            # The layer's maas last: the probe folder holds the third-party packages alone.
            probe_path = [Path(folder).resolve(), site]
            subprocess.run([*pip_install, "--quiet", "--target", folder], check=True)
        try:
            loaded = loaded_files(probe_path, modules_to_import(site))
        except LayerImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        compiled = compile_loaded(site, probe_path, loaded)
    added = sum(Path(cache_from_source(str(source))).stat().st_size for source in compiled)
    print(f"layer bytecode: {len(compiled)} modules compiled (unchecked-hash pycs), {added / 2**20:.1f} MiB")
    return 0


def why_not_compiled(arch: str, pip_install: Sequence[str]) -> str:
    """Why this Python cannot compile the layer's bytecode; "" when it can."""
    running = sys.implementation.name, sys.version_info[:2]
    if running != ("cpython", RUNTIME_PYTHON):
        found = f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}"
        return (
            f"{sys.executable} is {found}, and Lambda's python3.12 runtime reads CPython 3.12 bytecode only"
        )
    if sys.platform != "linux" or platform.machine().lower() not in ARCHITECTURES:
        return f"the layer's Linux modules do not import on this {sys.platform} {platform.machine()} machine"
    if ARCHITECTURES[platform.machine().lower()] != arch and not pip_install:
        return f"the {arch} layer does not import on this machine, and no pip command for it was given"
    return ""


def modules_to_import(site: Path) -> list[str]:
    """Every maas module in the layer, then every third-party module they import that the layer may hold."""
    maas = package_modules(site)
    return maas + sorted(third_party_imports(site, maas))


def package_modules(root: Path, package: str = "maas", excluded: Iterable[str] = ()) -> list[str]:
    """The modules of `package` under `root` (the folder holding it), less `excluded` subpackages."""
    skipped = tuple(excluded)
    names: list[str] = []
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if not any(name == sub or name.startswith(sub + ".") for sub in skipped):
            names.append(name)
    return names


def third_party_imports(root: Path, modules: Iterable[str]) -> set[str]:
    """The modules outside the standard library and maas that the given maas modules (under `root`) import,
    anywhere but under `if TYPE_CHECKING:`: imports inside functions too, which a first request may reach."""
    found: set[str] = set()
    for module in modules:
        path = root.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        found |= imported_names(ast.parse(path.read_text(encoding="utf-8")))
    skipped = {*sys.stdlib_module_names, "maas"}
    return {name for name in found if name.split(".")[0] not in skipped}


def imported_names(tree: ast.AST) -> set[str]:
    """The absolute module names a module's `import` and `from ... import` statements name."""
    names: set[str] = set()
    for node in _nodes_outside_type_checking(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def loaded_files(path: Sequence[Path], names: Sequence[str]) -> set[Path]:
    """The files of the modules a fresh `-I -S` process loads importing `names` with `path` alone.

    A third-party name none of `path` holds is left out: the functions reach it only offline (boto3), and
    the lock's own checks (tests/infra) say which distributions the layer must hold."""
    importable = [name for name in names if _holds(path, name.split(".")[0])]
    document = json.dumps([[str(p) for p in path], importable, list(CLIENT_FACTORIES)])
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", PROBE, document],
        capture_output=True,
        text=True,
        check=False,
        env=PROBE_ENV,
        timeout=PROBE_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise LayerImportError(f"importing the layer's modules failed:\n{done.stderr[-4000:]}")
    return {Path(file) for file in json.loads(done.stdout.strip().splitlines()[-1])}


def compile_loaded(site: Path, path: Sequence[Path], loaded: Iterable[Path]) -> list[Path]:
    """Compile, into `site`, the layer's copy of each loaded .py file found under one of `path`."""
    compiled: list[Path] = []
    for file in sorted(loaded):
        relative = _relative_to_any(file, path)
        if relative is None or relative.suffix != ".py" or not (site / relative).is_file():
            continue
        source = site / relative
        py_compile.compile(
            str(source),
            dfile=f"{LAMBDA_SITE}/{relative.as_posix()}",
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        compiled.append(source)
    return compiled


def _relative_to_any(file: Path, roots: Sequence[Path]) -> Path | None:
    for root in roots:
        if file.is_relative_to(root):
            return file.relative_to(root)
    return None


def _holds(path: Sequence[Path], top: str) -> bool:
    """Whether a folder of `path` holds the top-level package or module `top` (source or extension)."""
    return any(
        (root / top).is_dir() or any(root.glob(f"{top}.*py")) or any(root.glob(f"{top}.*.so"))
        for root in path
    )


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
