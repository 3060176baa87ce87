"""What the functions import at run time: maas's online modules and every third-party module they name.

Two checks use it. tests/infra/test_layer_lock.py imports all of it in a fresh process of the development
environment and asks which distributions the loaded modules come from: each must be in the lock.
infra/build_bundle.py imports all of it with a built layer as the only site-packages (CPython 3.12, `-S`):
the layer must hold everything it needs. Third-party imports are read from the source (imports inside
functions included, `if TYPE_CHECKING:` blocks left out), since maas defers several (tokenizers, jinja2)
until a model needs them; shared/layer_bytecode.py, which the layer's Makefile runs to choose the modules
it compiles, reads them the same way.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from infra.layer_lock import LAYER_SOURCE, OFFLINE_ONLY_SUBPACKAGES

from layer_bytecode import package_modules
from layer_bytecode import third_party_imports as layer_third_party_imports

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
    return package_modules(package_root, "maas", [sub.replace("/", ".") for sub in OFFLINE_ONLY_SUBPACKAGES])


def third_party_imports(package_root: Path, modules: Iterable[str]) -> set[str]:
    """The non-maas modules the given maas modules import, anywhere but under `if TYPE_CHECKING:`, less
    those only offline callers reach."""
    found = layer_third_party_imports(package_root, modules)
    return {name for name in found if name.split(".")[0] not in OFFLINE_CALLERS_ONLY}


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
