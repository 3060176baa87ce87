"""Build the Lambda deployment tree the way `sam build` builds it, for one architecture, and measure it.

`sam build` builds MaasLayer (ContentUri shared/, BuildMethod makefile) by copying shared/ into a scratch
folder and running its Makefile's `build-MaasLayer` target there with ARTIFACTS_DIR set: pip installs
shared/requirements.lock exactly (--no-deps, hashes checked) for CPython 3.12 on the architecture, then the
maas package less its offline subpackages is copied in (docs/deploy.md, "Building"). Each function's CodeUri
(functions/<name>/) is copied by aws-lambda-builders' python workflow, less its EXCLUDED_FILES; its
requirements.txt lists no package, so it gets no dependencies. This module does the same: it runs the same
Makefile target, with pip pointed at a wheelhouse folder, so it needs make and any Python with pip, not
Python 3.12, Docker or the SAM CLI:

    python infra/build_bundle.py --arch x86_64 --out build/bundle-x86_64

The wheelhouse (`--wheelhouse`, by default bench-results/bundle/wheelhouse/<arch>) keeps the lock's wheels:
a build whose wheels are all there asks no index; otherwise pip downloads the missing ones first. The built
layer is then checked against the lock (infra/layer_lock.py) and, where a CPython 3.12 is at hand and the
architecture is this machine's, imported: every function and online maas module, with the layer as the only
site-packages (infra/layer_imports.py).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python infra/build_bundle.py
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / sub) for sub in ("", "shared")]

from infra.layer_imports import function_apps, online_modules, run_probe, third_party_imports
from infra.layer_lock import (
    LAYER_SOURCE,
    OFFLINE_ONLY_SUBPACKAGES,
    canonical_name,
    installed_distributions,
    layer_problems,
    read_lock,
)
from infra.lock_layer import PLATFORMS, pip_platform_args
from infra.runtime_python import find_python312

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_SOURCE = ROOT / "functions"
# Kept between builds so a second one downloads nothing; bench-results/ is ignored by git.
DEFAULT_WHEELHOUSE = ROOT / "bench-results" / "bundle" / "wheelhouse"
LAYER_NAME = "MaasLayer"
# A Python layer's packages must sit under python/ in the layer zip: the runtime puts /opt/python on sys.path.
LAYER_SUBDIR = "python"
LOCK_NAME = "requirements.lock"
RUNTIME = "python3.12"
ARCHITECTURES = tuple(PLATFORMS)
# This machine's architecture as Lambda names it, for the import check.
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), ""
)
# What the custom-make workflow leaves out when it copies ContentUri into its scratch folder.
MAKE_EXCLUDED_FILES = (".aws-sam", ".git")
# aws-lambda-builders' PythonPipWorkflow.EXCLUDED_FILES: left out when it copies a function's CodeUri.
EXCLUDED_FILES = (
    ".aws-sam",
    ".chalice",
    ".git",
    ".gitignore",
    "*.pyc",
    "__pycache__",
    "*.so",
    ".Python",
    "*.egg-info",
    "*.egg",
    "pip-log.txt",
    "pip-delete-this-directory.txt",
    "htmlcov",
    ".tox",
    ".nox",
    ".coverage",
    ".cache",
    ".pytest_cache",
    ".python-version",
    ".mypy_cache",
    ".dmypy.json",
    ".pyre",
    ".env",
    ".venv",
    "venv",
    "venv.bak",
    "env.bak",
    "ENV",
    "env",
    ".vscode",
    ".idea",
)
# Distributions the Lambda python3.12 runtime has too (boto3's): a layer relying on the runtime's SDK would
# leave these out (decision 0025 measures it and keeps them).
RUNTIME_PROVIDED = frozenset({"botocore", "jmespath", "python-dateutil", "urllib3", "six"})
PIP_TIMEOUT_S = 900.0
MAKE_TIMEOUT_S = 600.0
PIP_RETRIES = 2
# Substrings of pip's output when the index cannot be reached at all (as opposed to a package it lacks).
UNREACHABLE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "ConnectTimeoutError",
    "ProxyError",
)
# The lines shared/layer_bytecode.py prints: what it compiled, or why it compiled nothing.
BYTECODE_MARKERS = ("layer bytecode:", "warning: the layer ships no bytecode")
_NOISE = "is ignored: it is neither a file nor a directory"


class BundleError(RuntimeError):
    """The bundle could not be built, or what was built is not what the lock says."""


class IndexUnreachableError(BundleError):
    """The package index could not be reached and the wheelhouse lacks some of the lock's wheels."""


@dataclass(frozen=True, slots=True)
class WheelFetch:
    """Where a build's wheels came from: "wheelhouse" (all there already) or "index" (some downloaded)."""

    source: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built tree: `root/MaasLayer/python/...` and `root/<function folder>/...`."""

    arch: str
    root: Path
    fetch: WheelFetch
    functions: tuple[str, ...]
    # The layer imported on CPython 3.12 with nothing else on sys.path: True, or why it was not tried.
    imports_checked: bool | str = False
    # What shared/layer_bytecode.py said: how many modules it compiled, or why the layer has no bytecode.
    bytecode: str = ""

    @property
    def layer(self) -> Path:
        return self.root / LAYER_NAME

    @property
    def site_packages(self) -> Path:
        return self.layer / LAYER_SUBDIR

    @property
    def versions(self) -> dict[str, str]:
        return installed_distributions(self.site_packages)

    def function(self, name: str) -> Path:
        return self.root / name


@dataclass(frozen=True, slots=True)
class BundleSizes:
    """Unzipped sizes in bytes, as Lambda counts them (the sum of the files' sizes), and the zipped ones."""

    arch: str
    layer: int
    functions: Mapping[str, int]
    # Each top-level entry of python/ (a package, a module, a .libs or .dist-info folder) and its size.
    entries: Mapping[str, int]
    # The distribution each entry belongs to, from the wheels' RECORD files ("" when none claims it).
    owners: Mapping[str, str]
    offline_only: Mapping[str, int]
    layer_zipped: int | None = None
    functions_zipped: Mapping[str, int] = field(default_factory=dict)
    # The __pycache__ folders shared/layer_bytecode.py wrote (part of `layer`).
    bytecode: int = 0

    @property
    def largest_function(self) -> str:
        return max(self.functions, key=lambda name: self.functions[name])

    @property
    def total(self) -> int:
        """The layer plus the largest function: what Lambda holds against its 250 MB unzipped limit."""
        return self.layer + self.functions[self.largest_function]

    @property
    def runtime_provided(self) -> int:
        return sum(size for entry, size in self.entries.items() if self.owners[entry] in RUNTIME_PROVIDED)

    @property
    def total_without_runtime_provided(self) -> int:
        return self.total - self.runtime_provided

    @property
    def dist_info(self) -> int:
        return sum(size for entry, size in self.entries.items() if entry.endswith(".dist-info"))

    def packages(self) -> dict[str, int]:
        """The top-level entries other than .dist-info metadata, largest first."""
        sizes = {e: s for e, s in self.entries.items() if not e.endswith(".dist-info")}
        return dict(sorted(sizes.items(), key=lambda item: item[1], reverse=True))

    def by_distribution(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for entry, size in self.entries.items():
            owner = self.owners[entry] or entry
            totals[owner] = totals.get(owner, 0) + size
        return dict(sorted(totals.items(), key=lambda item: item[1], reverse=True))


def build_bundle(
    arch: str,
    out: Path,
    *,
    wheelhouse: Path,
    layer_source: Path = LAYER_SOURCE,
    functions_source: Path = FUNCTIONS_SOURCE,
    python: str = sys.executable,
    python312: str | None = None,
) -> Bundle:
    """Build the layer and every function into `out` (emptied first), as `sam build` would for `arch`.

    `python312` (default: infra/runtime_python.py's) compiles its bytecode. Raises BundleError when the
    layer differs from the lock, or does not import on `python312` (where `arch` is this machine's)."""
    if arch not in PLATFORMS:
        raise BundleError(f"expected an architecture in {sorted(PLATFORMS)}, got {arch!r}")
    lock_path = layer_source / LOCK_NAME
    python312 = find_python312(python312)
    fetch = fetch_wheels(lock_path, arch, wheelhouse, python=python)
    wheelhouses = [wheelhouse]
    if python312 is not None and HOST_ARCH and arch != HOST_ARCH:
        # layer_bytecode.py imports a layer of the other architecture with the lock installed for this one.
        wheelhouses.append(wheelhouse.parent / HOST_ARCH)
        fetch_wheels(lock_path, HOST_ARCH, wheelhouses[-1], python=python)
    if out.exists() and any(out.iterdir()):
        if not (out / LAYER_NAME).is_dir():
            raise BundleError(f"refusing to empty {out}: it is not empty and holds no earlier bundle")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    bytecode = run_layer_makefile(
        layer_source, out / LAYER_NAME, arch, wheelhouses, python=python, bytecode_python=python312
    )
    site = out / LAYER_NAME / LAYER_SUBDIR
    problems = layer_problems(site, read_lock(lock_path))
    if problems:
        raise BundleError(f"the {arch} layer is not what {LOCK_NAME} says:\n  " + "\n  ".join(problems))
    functions = sorted(p.name for p in functions_source.iterdir() if (p / "app.py").is_file())
    for name in functions:
        copy_source(functions_source / name, out / name)
    imports_checked = check_layer_imports(site, arch, functions_source, python312=python312)
    return Bundle(arch, out, fetch, tuple(functions), imports_checked, bytecode)


def fetch_wheels(lock: Path, arch: str, wheelhouse: Path, *, python: str = sys.executable) -> WheelFetch:
    """Make sure `wheelhouse` holds every wheel `lock` pins for `arch`; downloads only what is missing."""
    started = time.perf_counter()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "pip", "download", "--no-deps", "--require-hashes", "--ignore-requires-python"]
    argv += [*pip_platform_args(arch), "--dest", str(wheelhouse), "--requirement", str(lock)]
    local = _run([*argv, "--no-index", "--find-links", str(wheelhouse)], PIP_TIMEOUT_S)
    if local.returncode == 0:
        return WheelFetch("wheelhouse", time.perf_counter() - started)
    # At least one retry: pip names the connection error it met (what is_unreachable looks for) only then.
    online = _run([*argv, "--retries", str(PIP_RETRIES)], PIP_TIMEOUT_S)
    if online.returncode != 0:
        error = IndexUnreachableError if is_unreachable(online.stdout) else BundleError
        raise error(f"pip download of {lock.name}'s wheels for {arch} failed:\n{_tail(online.stdout)}")
    return WheelFetch("index", time.perf_counter() - started)


def run_layer_makefile(
    layer_source: Path,
    artifacts: Path,
    arch: str,
    wheelhouses: Sequence[Path],
    *,
    python: str = sys.executable,
    bytecode_python: str | None = None,
) -> str:
    """What `sam build` does for a makefile layer: copy ContentUri to a scratch folder, run make there.

    Returns what the bytecode step said (modules compiled, or why none were)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maas-layer-scratch-", dir=artifacts.parent) as scratch:
        shutil.copytree(
            layer_source, scratch, ignore=shutil.ignore_patterns(*MAKE_EXCLUDED_FILES), dirs_exist_ok=True
        )
        makefile = Path(scratch) / "Makefile"
        environment = {
            **os.environ,
            "ARTIFACTS_DIR": str(artifacts),
            "MAAS_LAYER_ARCH": arch,
            "PYTHON": python,
            # The wheels fetch_wheels checked: the build itself asks no index.
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": " ".join(str(folder) for folder in wheelhouses),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **({"BYTECODE_PYTHON": bytecode_python} if bytecode_python else {}),
        }
        done = _run(
            ["make", "--makefile", str(makefile), f"build-{LAYER_NAME}"], MAKE_TIMEOUT_S, environment, scratch
        )
    if done.returncode != 0:
        raise BundleError(f"make build-{LAYER_NAME} for {arch} failed:\n{_tail(done.stdout)}")
    said = [line for line in done.stdout.splitlines() if line.startswith(BYTECODE_MARKERS)]
    return said[-1] if said else "the Makefile said nothing about bytecode"


def check_layer_imports(
    site: Path, arch: str, functions_source: Path, *, python312: str | None = None
) -> bool | str:
    """Import every function and online maas module with `site` as the only site-packages, on CPython 3.12.

    Returns True, or why it could not be tried; raises BundleError when an import fails."""
    if arch != HOST_ARCH:
        return f"not tried: the {arch} layer does not run on this {HOST_ARCH or platform.machine()} machine"
    python312 = find_python312(python312)
    if python312 is None:
        return "not tried: no working CPython 3.12 found"
    modules = online_modules(site)
    names = modules + sorted(third_party_imports(site, modules))
    try:
        run_probe(python312, [site], function_apps(functions_source), names, isolated=True)
    except ImportError as exc:
        raise BundleError(f"the {arch} layer does not import on its own: {exc}") from exc
    return True


def is_unreachable(pip_output: str) -> bool:
    return any(marker in pip_output for marker in UNREACHABLE_MARKERS)


def copy_source(source: Path, target: Path) -> None:
    """Copy a CodeUri/ContentUri folder's contents into `target`, less aws-lambda-builders' EXCLUDED_FILES."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*EXCLUDED_FILES), dirs_exist_ok=True)


def tree_bytes(path: Path) -> int:
    """The sum of the regular files' sizes under `path` (or of `path` itself), links not followed."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size if stat.S_ISREG(info.st_mode) else 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def record_owners(site: Path) -> dict[str, str]:
    """Each top-level entry of `site` and the distribution whose RECORD lists it."""
    owners: dict[str, str] = {}
    for record in site.glob("*.dist-info/RECORD"):
        distribution = canonical_name(record.parent.name.split("-")[0])
        for line in record.read_text(encoding="utf-8").splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and top != "..":
                owners.setdefault(top, distribution)
    return owners


def zipped_bytes(folder: Path, scratch: Path) -> int:
    """The size of `folder`'s contents zipped as `sam package` zips them (DEFLATE, default level)."""
    handle, name = tempfile.mkstemp(suffix=".zip", dir=scratch)
    os.close(handle)
    archive_path = Path(name)
    try:
        with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    archive.write(path, path.relative_to(folder).as_posix())
        return archive_path.stat().st_size
    finally:
        archive_path.unlink(missing_ok=True)


def measure(
    bundle: Bundle, *, zipped: bool = True, scratch: Path | None = None, layer_source: Path = LAYER_SOURCE
) -> BundleSizes:
    site = bundle.site_packages
    entries = {entry.name: tree_bytes(entry) for entry in site.iterdir()}
    owners = record_owners(site)
    layer_zipped: int | None = None
    functions_zipped: dict[str, int] = {}
    if zipped:
        scratch = scratch or bundle.root
        layer_zipped = zipped_bytes(bundle.layer, scratch)
        functions_zipped = {name: zipped_bytes(bundle.function(name), scratch) for name in bundle.functions}
    return BundleSizes(
        arch=bundle.arch,
        layer=tree_bytes(bundle.layer),
        functions={name: tree_bytes(bundle.function(name)) for name in bundle.functions},
        entries=dict(sorted(entries.items(), key=lambda item: item[1], reverse=True)),
        owners={entry: owners.get(entry, "") for entry in entries},
        offline_only={sub: source_bytes(layer_source / sub) for sub in OFFLINE_ONLY_SUBPACKAGES},
        layer_zipped=layer_zipped,
        functions_zipped=functions_zipped,
        bytecode=sum(tree_bytes(cache) for cache in site.rglob("__pycache__")),
    )


def source_bytes(path: Path) -> int:
    """The size of a source folder as it would ship: its files less the __pycache__ folders."""
    total = 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        total += sum(tree_bytes(Path(folder) / name) for name in files)
    return total


def excluded_bytes(source: Path) -> dict[str, int]:
    """What EXCLUDED_FILES leave out of `source` (its __pycache__ folders, *.egg-info, ...), by pattern."""
    left_out: dict[str, int] = {}
    for folder, dirs, files in os.walk(source):
        for name in [*dirs, *files]:
            pattern = next((p for p in EXCLUDED_FILES if fnmatch.fnmatch(name, p)), None)
            if pattern is not None:
                left_out[pattern] = left_out.get(pattern, 0) + tree_bytes(Path(folder) / name)
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in EXCLUDED_FILES)]
    return left_out


def _run(
    argv: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
            env=dict(env) if env is not None else {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise BundleError(
            f"{Path(argv[0]).name} {argv[1] if len(argv) > 1 else ''}: expected to finish "
            f"within {timeout_s:.0f} s"
        ) from exc


def _tail(output: str, lines: int = 30) -> str:
    return "\n".join([line for line in output.splitlines() if _NOISE not in line][-lines:])


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):8.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--arch", choices=ARCHITECTURES, default="x86_64")
    parser.add_argument("--out", type=Path, required=True, help="folder to build into (emptied first)")
    parser.add_argument("--wheelhouse", type=Path, help="where downloaded wheels are kept")
    parser.add_argument("--no-zip", action="store_true", help="skip measuring the zipped sizes")
    parser.add_argument("--python312", help="the CPython 3.12 to compile and import the layer with")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    wheelhouse: Path = args.wheelhouse or DEFAULT_WHEELHOUSE / args.arch
    try:
        bundle = build_bundle(args.arch, out, wheelhouse=wheelhouse.resolve(), python312=args.python312)
    except BundleError as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        return 1
    sizes = measure(bundle, zipped=not args.no_zip)
    print(f"built {bundle.layer} and {len(bundle.functions)} functions for {bundle.arch}")
    print(f"wheels from the {bundle.fetch.source} ({bundle.fetch.seconds:.1f} s); layer = {LOCK_NAME}")
    imported = bundle.imports_checked
    print("imports on CPython 3.12 with the layer alone: " + ("yes" if imported is True else str(imported)))
    print(f"{bundle.bytecode}; {_mb(sizes.bytecode).strip()} of bytecode")
    for entry, size in sizes.packages().items():
        print(f"  {_mb(size)}  {entry}")
    print(f"  {_mb(sizes.dist_info)}  *.dist-info")
    print(f"{_mb(sizes.layer)}  layer, unzipped")
    for name, size in sizes.functions.items():
        print(f"{_mb(size)}  function {name}, unzipped")
    print(f"{_mb(sizes.total)}  layer + largest function, unzipped (Lambda's limit: 250 MB)")
    print(f"{_mb(sizes.total_without_runtime_provided)}  the same without what the runtime provides")
    if sizes.layer_zipped is not None:
        print(f"{_mb(sizes.layer_zipped)}  layer, zipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
