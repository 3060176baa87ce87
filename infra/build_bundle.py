"""Build the Lambda deployment tree the way `sam build` builds it, for one architecture, and measure it.

`sam build` builds MaasLayer (ContentUri shared/, BuildMethod python3.12) with aws-lambda-builders' pip
workflow: it downloads Linux wheels for CPython 3.12 and the function's architecture, unzips them into the
layer's `python/` folder (no byte-compiling, `.data/purelib` and `.data/platlib` moved up), then copies the
ContentUri folder into the same `python/` folder, leaving out its EXCLUDED_FILES (`__pycache__`, `*.pyc`,
`*.egg-info`, ...). Each function's CodeUri (functions/<name>/) is copied the same way; its requirements.txt
lists no package, so it gets no dependencies. This module does the same with pip's `--platform` download,
so it runs on any machine with network access, without Python 3.12, Docker or the SAM CLI:

    python infra/build_bundle.py --arch x86_64 --out build/bundle-x86_64

Downloaded wheels are kept in a wheelhouse folder (`--wheelhouse`, by default
bench-results/bundle/wheelhouse/<arch>), so a second build downloads nothing new, though pip still spends
tens of seconds resolving against the index; `--reuse-hours H` reuses the wheelhouse's last resolution when
it is at most H hours old. When the index cannot be reached, a build falls back to the wheelhouse alone.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_SOURCE = ROOT / "shared"
FUNCTIONS_SOURCE = ROOT / "functions"
# Kept between builds so a second one downloads nothing new; bench-results/ is ignored by git.
DEFAULT_WHEELHOUSE = ROOT / "bench-results" / "bundle" / "wheelhouse"
LAYER_NAME = "MaasLayer"
# A Python layer's packages must sit under python/ in the layer zip: the runtime puts /opt/python on sys.path.
LAYER_SUBDIR = "python"
RUNTIME = "python3.12"
PYTHON_VERSION = "3.12"
ABI = "cp312"
ARCHITECTURES = ("x86_64", "arm64")
# aws-lambda-builders' DependencyBuilder.compatible_platforms for python3.12 (Lambda's runtime is Amazon
# Linux 2023, glibc 2.34): the platforms it downloads wheels for and accepts.
PLATFORMS: Mapping[str, tuple[str, ...]] = {
    "x86_64": (
        "any",
        "linux_x86_64",
        "manylinux1_x86_64",
        "manylinux2010_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_34_x86_64",
    ),
    "arm64": (
        "any",
        "linux_aarch64",
        "manylinux2014_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux_2_34_aarch64",
    ),
}
# aws-lambda-builders' PythonPipWorkflow.EXCLUDED_FILES: left out when it copies a CodeUri/ContentUri folder
# (not when it installs the wheels).
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
# Distributions the Lambda python3.12 runtime already has (boto3 and what it pulls in): a layer that leaves
# them out uses the runtime's versions instead.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
)
# maas subpackages no function imports: training (torch), the local emulator and the CLI.
OFFLINE_ONLY_SUBPACKAGES = ("maas/training", "maas/local", "maas/cli")
PIP_TIMEOUT_S = 900.0
PIP_RETRIES = 2
# In the wheelhouse: the last index resolution (wheel files, when, for which requirements and platforms).
LOCK_FILE = "resolved.json"
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
_ALREADY_DOWNLOADED = "File was already downloaded "
_SAVED = "Saved "
_NOISE = "is ignored: it is neither a file nor a directory"


class BundleError(RuntimeError):
    """The bundle could not be built."""


class IndexUnreachableError(BundleError):
    """The package index could not be reached and the wheelhouse cannot stand in for it."""


@dataclass(frozen=True, slots=True)
class Wheel:
    path: Path

    @property
    def name(self) -> str:
        return canonical_name(self.path.name.split("-")[0])

    @property
    def version(self) -> str:
        return self.path.name.split("-")[1]


@dataclass(frozen=True, slots=True)
class Resolution:
    """The wheels a build installs, and where that list came from."""

    wheels: tuple[Wheel, ...]
    # "index": pip resolved against the package index just now; "wheelhouse": the index was unreachable and
    # pip resolved against the wheelhouse alone; "lock": a recent "index" resolution was reused, without pip.
    source: str
    resolved_at: datetime
    # Seconds spent resolving and downloading: most of a build unless the lock was reused.
    seconds: float

    @property
    def versions(self) -> dict[str, str]:
        return {wheel.name: wheel.version for wheel in sorted(self.wheels, key=lambda w: w.name)}


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built tree: `root/MaasLayer/python/...` and `root/<function folder>/...`."""

    arch: str
    root: Path
    resolution: Resolution
    functions: tuple[str, ...]

    @property
    def layer(self) -> Path:
        return self.root / LAYER_NAME

    @property
    def site_packages(self) -> Path:
        return self.layer / LAYER_SUBDIR

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


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_bundle(
    arch: str,
    out: Path,
    *,
    wheelhouse: Path,
    reuse_within_s: float | None = None,
    requirements: Path | None = None,
    layer_source: Path = LAYER_SOURCE,
    functions_source: Path = FUNCTIONS_SOURCE,
    python: str = sys.executable,
) -> Bundle:
    """Build the layer and every function into `out` (emptied first), as `sam build` would for `arch`.

    `reuse_within_s`: reuse the wheelhouse's last index resolution when it is at most this old (and for the
    same requirements), instead of asking pip again; None always asks pip, as `sam build` does."""
    if arch not in PLATFORMS:
        raise BundleError(f"expected an architecture in {sorted(PLATFORMS)}, got {arch!r}")
    requirements = requirements or layer_source / "requirements.txt"
    resolution = resolve_wheels(requirements, wheelhouse, arch, reuse_within_s=reuse_within_s, python=python)
    if out.exists() and any(out.iterdir()):
        if not (out / LAYER_NAME).is_dir():
            raise BundleError(f"refusing to empty {out}: it is not empty and holds no earlier bundle")
        shutil.rmtree(out)
    site = out / LAYER_NAME / LAYER_SUBDIR
    install_wheels(resolution.wheels, site)
    copy_source(layer_source, site)
    functions = sorted(p.name for p in functions_source.iterdir() if (p / "app.py").is_file())
    for name in functions:
        copy_source(functions_source / name, out / name)
    return Bundle(arch, out, resolution, tuple(functions))


def resolve_wheels(
    requirements: Path,
    wheelhouse: Path,
    arch: str,
    *,
    reuse_within_s: float | None = None,
    python: str = sys.executable,
) -> Resolution:
    """The wheels `requirements` resolve to for Lambda's python3.12 on `arch`, downloaded into `wheelhouse`.

    pip spends tens of seconds of CPU on the index's long release lists even when every wheel is already
    in the wheelhouse, so an index resolution is written to the wheelhouse's lock file for reuse."""
    started = time.perf_counter()
    key = _lock_key(requirements, arch)
    lock = wheelhouse / LOCK_FILE
    if reuse_within_s is not None:
        reused = _read_lock(lock, key, wheelhouse, reuse_within_s)
        if reused is not None:
            return Resolution(reused[0], "lock", reused[1], time.perf_counter() - started)
    wheels, offline = download_wheels(requirements, wheelhouse, arch, python=python)
    now = datetime.now(UTC)
    if not offline:
        document = {"key": key, "resolved_at": now.isoformat(), "wheels": [w.path.name for w in wheels]}
        lock.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    source = "wheelhouse" if offline else "index"
    return Resolution(tuple(wheels), source, now, time.perf_counter() - started)


def download_wheels(
    requirements: Path, wheelhouse: Path, arch: str, *, python: str = sys.executable
) -> tuple[list[Wheel], bool]:
    """Run `pip download` for `requirements` on Lambda's python3.12 and `arch`, into `wheelhouse`.

    Returns the wheels it resolved to and whether the index was unreachable (they then come from the
    wheelhouse alone)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "pip", "download", *pip_platform_args(arch), "--dest", str(wheelhouse)]
    # At least one retry: pip names the connection error it met (what is_unreachable looks for) only then.
    argv += ["--retries", str(PIP_RETRIES), "--requirement", str(requirements)]
    done = _run_pip(argv)
    offline = False
    if done.returncode != 0 and is_unreachable(done.stdout):
        if not any(wheelhouse.glob("*.whl")):
            raise IndexUnreachableError(
                f"the package index is unreachable and {wheelhouse} holds no wheels:\n{_tail(done.stdout)}"
            )
        done = _run_pip([*argv, "--no-index", "--find-links", str(wheelhouse)])
        offline = True
    if done.returncode != 0:
        reason = "the wheelhouse alone cannot satisfy it" if offline else "pip failed"
        raise BundleError(f"pip download for {arch}: {reason}:\n{_tail(done.stdout)}")
    return downloaded_wheels(done.stdout, wheelhouse), offline


def pip_platform_args(arch: str) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    args += ["--abi", ABI]
    for platform in PLATFORMS[arch]:
        args += ["--platform", platform]
    return args


def downloaded_wheels(pip_output: str, wheelhouse: Path) -> list[Wheel]:
    """The wheels one `pip download` run used, from its log: the wheelhouse may hold older ones too."""
    names: list[str] = []
    for raw in pip_output.splitlines():
        line = raw.strip()
        for prefix in (_ALREADY_DOWNLOADED, _SAVED):
            if line.startswith(prefix) and line.endswith(".whl"):
                names.append(Path(line.removeprefix(prefix)).name)
    wheels = [Wheel(wheelhouse / name) for name in dict.fromkeys(names)]
    expected = _successfully_downloaded(pip_output)
    found = {wheel.name for wheel in wheels}
    if not wheels or (expected and expected != found) or len(found) != len(wheels):
        raise BundleError(
            "expected pip's log to name one wheel per distribution it downloaded; "
            f"it named {sorted(w.path.name for w in wheels)} for {sorted(expected)}"
        )
    missing = [wheel.path.name for wheel in wheels if not wheel.path.is_file()]
    if missing:
        raise BundleError(f"expected pip's wheels in {wheelhouse}, missing {missing}")
    return wheels


def is_unreachable(pip_output: str) -> bool:
    return any(marker in pip_output for marker in UNREACHABLE_MARKERS)


def install_wheels(wheels: Iterable[Wheel], target: Path) -> None:
    """Unzip each wheel into `target` as aws-lambda-builders does: no byte-compiling, no scripts."""
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel.path) as archive:
            archive.extractall(target)
        for data_dir in target.glob("*.data"):
            for scheme in ("purelib", "platlib"):
                if (data_dir / scheme).is_dir():
                    shutil.copytree(data_dir / scheme, target, dirs_exist_ok=True)
                    shutil.rmtree(data_dir / scheme)


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


def measure(bundle: Bundle, *, zipped: bool = True, scratch: Path | None = None) -> BundleSizes:
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
        offline_only={
            sub: tree_bytes(site / sub) for sub in OFFLINE_ONLY_SUBPACKAGES if (site / sub).exists()
        },
        layer_zipped=layer_zipped,
        functions_zipped=functions_zipped,
    )


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


def _lock_key(requirements: Path, arch: str) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(json.dumps([RUNTIME, arch, pip_platform_args(arch)]).encode())
    return digest.hexdigest()


def _read_lock(
    lock: Path, key: str, wheelhouse: Path, max_age_s: float
) -> tuple[tuple[Wheel, ...], datetime] | None:
    """The lock's wheels and time when it is for `key`, young enough and its wheels are all there."""
    try:
        document = json.loads(lock.read_text(encoding="utf-8"))
        resolved_at = datetime.fromisoformat(document["resolved_at"])
        wheels = tuple(Wheel(wheelhouse / str(name)) for name in document["wheels"])
        fresh = (datetime.now(UTC) - resolved_at).total_seconds() <= max_age_s
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if document.get("key") != key or not fresh or not wheels:
        return None
    if not all(wheel.path.is_file() for wheel in wheels):
        return None
    return wheels, resolved_at


def _run_pip(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        raise BundleError(f"pip download: expected to finish within {PIP_TIMEOUT_S:.0f} s") from exc


def _successfully_downloaded(pip_output: str) -> set[str]:
    for line in reversed(pip_output.splitlines()):
        if line.startswith("Successfully downloaded "):
            return {canonical_name(n) for n in line.removeprefix("Successfully downloaded ").split()}
    return set()


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
    parser.add_argument(
        "--reuse-hours",
        type=float,
        help="reuse the wheelhouse's last resolution when at most this old, instead of asking pip again",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    wheelhouse: Path = args.wheelhouse or DEFAULT_WHEELHOUSE / args.arch
    try:
        reuse_s = None if args.reuse_hours is None else 3600 * args.reuse_hours
        bundle = build_bundle(args.arch, out, wheelhouse=wheelhouse, reuse_within_s=reuse_s)
    except BundleError as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        return 1
    sizes = measure(bundle, zipped=not args.no_zip)
    print(f"built {bundle.layer} and {len(bundle.functions)} functions for {bundle.arch}")
    resolution = bundle.resolution
    print(f"wheels resolved by {resolution.source} at {resolution.resolved_at:%Y-%m-%d %H:%M} UTC")
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
