"""The functions as Lambda runs them: functions/<name>/app.py imported afresh, as a new container would,
with the environment the template gives them pointed at the test bucket."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from types import ModuleType

import pytest

from tests.support.aws import TEST_BUCKET
from tests.support.paths import ROOT

# Tests never ask for CUDA: the provider is fixed so a GPU host runs the same suite as a laptop.
FUNCTION_ENV: Mapping[str, str] = {"MAAS_BUCKET": TEST_BUCKET, "MAAS_PROVIDER": "cpu"}


def load_function_module(function: str) -> ModuleType:
    """Import functions/<function>/app.py afresh, as Lambda would in a new container."""
    path = ROOT / "functions" / function / "app.py"
    module_name = f"maas_test_function_{function}_{os.urandom(4).hex()}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def set_function_env(env: pytest.MonkeyPatch, **settings: str) -> None:
    """The environment a function reads at import: the test bucket, the CPU provider, then `settings`."""
    for name, value in {**FUNCTION_ENV, **settings}.items():
        env.setenv(name, value)


def start_function(env: pytest.MonkeyPatch, function: str = "infer", **settings: str) -> ModuleType:
    """A fresh `function` over the test bucket: what every `*_function` fixture returns."""
    set_function_env(env, **settings)
    return load_function_module(function)
