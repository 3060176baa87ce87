"""Nothing the functions can import deserializes with pickle: loading a model must never run its code.

Given every module under shared/maas that a function may import (all but maas.training, maas.cli and
maas.local, which are offline) and every functions/*/app.py, the AST must show no import of pickle or its
relatives (joblib, dill, cloudpickle, shelve, marshal, torch), no call that unpickles (torch.load,
pickle.loads), and no allow_pickle=True (np.load).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "shared" / "maas"
OFFLINE = ("training", "cli", "local")
UNPICKLING_MODULES = frozenset(
    {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal", "torch", "skops"}
)
UNPICKLING_CALLS = frozenset({"load", "loads", "Unpickler"})


def runtime_sources() -> list[Path]:
    package = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in OFFLINE and "__pycache__" not in path.parts
    ]
    return package + sorted(ROOT.glob("functions/*/app.py"))


def unpickling_uses(source: str) -> list[str]:
    """Each import, call or keyword in `source` that could unpickle, as 'line N: what'."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        found.extend(
            f"line {getattr(node, 'lineno', 0)}: import {module}"
            for module in modules
            if module.split(".")[0] in UNPICKLING_MODULES
        )
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in UNPICKLING_MODULES
                and func.attr in UNPICKLING_CALLS
            ):
                found.append(f"line {node.lineno}: {func.value.id}.{func.attr}()")
            # importlib.import_module("pickle") and __import__("pickle") name it as a string.
            for argument in node.args:
                if (
                    isinstance(argument, ast.Constant)
                    and isinstance(argument.value, str)
                    and argument.value.split(".")[0] in UNPICKLING_MODULES
                    and _name_of(func) in {"import_module", "__import__"}
                ):
                    found.append(f"line {node.lineno}: dynamic import of {argument.value}")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"line {node.lineno}: allow_pickle={ast.unparse(keyword.value)}")
    return found


def _name_of(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def test_the_scan_covers_the_serving_code() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in runtime_sources()}
    assert "shared/maas/runtime/loaded_model.py" in names
    assert "shared/maas/registry/store.py" in names
    assert "functions/infer/app.py" in names
    assert not [name for name in names if name.startswith(("shared/maas/training/", "shared/maas/cli/"))]


@pytest.mark.parametrize("path", runtime_sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_a_function_imports_can_unpickle(path: Path) -> None:
    assert unpickling_uses(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "finding"),
    [
        ("import pickle", "import pickle"),
        ("from joblib import load", "import joblib"),
        ("import torch.serialization", "import torch.serialization"),
        ("import numpy as np\nnp.load(path, allow_pickle=True)", "allow_pickle=True"),
        ("np.load(path, allow_pickle=flag)", "allow_pickle=flag"),
        ("torch.load(path)", "torch.load()"),
        ("pickle.loads(data)", "pickle.loads()"),
        ("importlib.import_module('dill')", "dynamic import of dill"),
        ("__import__('cloudpickle')", "dynamic import of cloudpickle"),
    ],
)
def test_the_scan_finds_each_way_of_unpickling(source: str, finding: str) -> None:
    assert [use.partition(": ")[2] for use in unpickling_uses(source)] == [finding]


def test_the_scan_allows_what_is_safe() -> None:
    assert unpickling_uses("import json\nnp.load(path, allow_pickle=False)\nnp.load(path)") == []
