"""The layer rule is enforced: the import-linter contracts in pyproject.toml hold for the package, and a
planted import that breaks each kind of contract (layers, independence, forbidden) fails them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = "maas layers import downwards only"
ONLINE = "the online layers never import torch, the ONNX exporter or the offline packages"
ADAPTERS = "the HTTP transport and the event adapters do not import each other"
FUNCTIONS = "each function's composition root wires only its own function"


def run_contracts(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts over the `maas` package found in `package_parent`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_every_contract() -> None:
    completed = run_contracts(ROOT / "shared")

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "0 broken" in completed.stdout


@pytest.mark.parametrize(
    ("module", "planted_import", "broken_contracts"),
    [
        # upward: the registry reaching for the service layer
        ("registry/store.py", "import maas.service.inference", {LAYERS}),
        # the wire types reaching for the service that uses them
        ("protocol/v2_codec.py", "import maas.service.batch_jobs", {LAYERS}),
        # the wire types reaching for the HTTP transport: indirectly, the event adapters now depend on it
        ("protocol/v2_codec.py", "import maas.api.openapi", {LAYERS, ADAPTERS}),
        # a composition root reaching for the CLI, which is offline code too
        ("apps/__init__.py", "import maas.cli.models", {LAYERS, ONLINE}),
        # online code reaching for offline code
        ("runtime/cache.py", "import maas.training", {LAYERS, ONLINE}),
        # siblings: the local emulator and the training code never import each other
        ("local/stack.py", "import maas.training.pipeline", {LAYERS}),
        # the adapters are independent siblings
        ("events/queues.py", "import maas.api.openapi", {LAYERS, ADAPTERS}),
        # one function's composition root borrowing another's: the registry would load onnxruntime
        ("apps/registry.py", "import maas.apps.infer", {FUNCTIONS}),
        # heavy packages stay offline, even in a leaf
        ("config.py", "import torch", {ONLINE}),
        # the leaves are ordered too: errors reaching back for the configuration would be a cycle
        ("errors.py", "import maas.config", {LAYERS}),
        # an import inside a function is still an import: the local stack training models lazily
        ("local/stack.py", "def _seed():\n    import maas.training.pipeline", {LAYERS}),
    ],
)
def test_a_planted_import_breaks_its_contract(
    tmp_path: Path, module: str, planted_import: str, broken_contracts: set[str]
) -> None:
    shutil.copytree(ROOT / "shared" / "maas", tmp_path / "maas", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "maas" / module
    target.write_text(target.read_text() + f"\n{planted_import}  # planted by the test\n")

    completed = run_contracts(tmp_path)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    broken = {line.split(" BROKEN")[0] for line in completed.stdout.splitlines() if " BROKEN" in line}
    assert broken == broken_contracts, completed.stdout
    assert planted_import.rsplit(maxsplit=1)[-1].replace(".", "/") in completed.stdout.replace(".", "/")


def test_a_module_without_a_layer_breaks_the_layers_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "shared" / "maas", tmp_path / "maas", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "maas" / "helpers.py").write_text('"""A grab-bag nobody placed."""\n')

    completed = run_contracts(tmp_path)

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "maas.helpers" in completed.stdout
