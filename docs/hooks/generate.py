"""The docs pages that must not drift: filled in at build time from the code and the benchmark record.

An mkdocs hook (`hooks:` in mkdocs.yml). `configuration.md` gets a table of every environment variable
`maas.config` names, with its default as `Settings.from_env({})` computes it and its line from
`ENV_DESCRIPTIONS`; `api.md`, `registry.md` and `generation.md` get their function's rows of the one route table
(`maas.api.route_table`); `performance.md` gets `bench-results/results.md`, as `make bench` wrote it. A page
without its marker, a variable without a description or a missing record fails the build.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
BENCH_RESULTS = ROOT / "bench-results" / "results.md"
CONFIGURATION_MARKER = "<!-- generated: configuration -->"
BENCH_MARKER = "<!-- generated: bench-results -->"
INFER_ROUTES_MARKER = "<!-- generated: routes infer -->"
REGISTRY_ROUTES_MARKER = "<!-- generated: routes registry -->"
GENERATE_ROUTES_MARKER = "<!-- generated: routes generate -->"
EVERY_MEASUREMENT = "#### Every measurement"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    generated = {
        "configuration.md": (CONFIGURATION_MARKER, configuration_table),
        "performance.md": (BENCH_MARKER, bench_results),
        "api.md": (INFER_ROUTES_MARKER, lambda: route_rows("infer")),
        "registry.md": (REGISTRY_ROUTES_MARKER, lambda: route_rows("registry")),
        "generation.md": (GENERATE_ROUTES_MARKER, lambda: route_rows("generate")),
    }.get(page.file.src_uri)
    if generated is None:
        return markdown
    marker, render = generated
    if marker not in markdown:
        raise PluginError(f"{page.file.src_uri}: expected the marker {marker}, found none")
    return markdown.replace(marker, render())


def configuration_table() -> str:
    config = _load_config()
    names = [
        value for attr, value in vars(config).items() if attr.startswith("ENV_") and isinstance(value, str)
    ]
    undescribed = [name for name in names if name not in config.ENV_DESCRIPTIONS]
    if undescribed:
        raise PluginError(f"maas.config: expected a line in ENV_DESCRIPTIONS for {undescribed}, found none")
    fields = _settings_field_by_variable(config)
    defaults = config.Settings.from_env({})
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name in names:
        field = fields.get(name)
        default = "—"
        if field:
            default = _describe_default(getattr(defaults, field), in_bytes=field.endswith("bytes"))
        rows.append(f"| `{name}` | {default} | {config.ENV_DESCRIPTIONS[name]} |")
    return "\n".join(rows) + "\n"


def bench_results() -> str:
    if not BENCH_RESULTS.is_file():
        raise PluginError(f"expected {BENCH_RESULTS.relative_to(ROOT)} (make bench writes it), found none")
    return _fold_every_measurement(BENCH_RESULTS.read_text())


def route_rows(function: str) -> str:
    """The function's routes as the route table declares them, in its order; GET rows also answer HEAD."""
    table = _load("maas.api.route_table")
    rows = ["| route | what | binary tensors |", "|---|---|---|"]
    for route in table.ROUTES:
        if route.function == function:
            methods = "/".join(method.value for method in route.methods)
            binary = "yes" if route.binary else ""
            rows.append(f"| `{methods} {route.path}` | {route.summary} | {binary} |")
    return "\n".join(rows) + "\n"


def _load_config() -> ModuleType:
    return _load("maas.config")


def _load(module: str) -> ModuleType:
    # The pages describe this checkout's code, not whichever maas the environment installed.
    shared = str(ROOT / "shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    return importlib.import_module(module)


def _settings_field_by_variable(config: ModuleType) -> dict[str, str]:
    """Which Settings field each variable sets, read from `Settings.from_env`'s own code.

    Every keyword of its `cls(...)` call names a field; the ENV_ constants its value mentions, directly or
    through a local variable assigned in from_env, are the variables that set it."""
    function = ast.parse(textwrap.dedent(inspect.getsource(config.Settings.from_env)))
    mentions: dict[str, set[str]] = {}
    fields: dict[str, str] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            mentions[node.targets[0].id] = _names_in(node.value)
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cls":
            for keyword in node.keywords:
                used = _names_in(keyword.value)
                used |= {name for local in used for name in mentions.get(local, set())}
                for attr in used:
                    if attr.startswith("ENV_") and isinstance(getattr(config, attr, None), str):
                        fields[getattr(config, attr)] = str(keyword.arg)
    return fields


def _names_in(node: ast.AST) -> set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}


def _describe_default(value: object, *, in_bytes: bool) -> str:
    if value is None:
        return "unset"
    if value in ("", ()):
        return "empty"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if in_bytes and isinstance(value, int) and value >= 1024 and value % 1024 == 0:
        return f"`{value}` ({_binary_size(value)})"
    return f"`{value}`"


def _binary_size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} bytes"


def _fold_every_measurement(record: str) -> str:
    """Each run's full table folds away (a collapsed admonition); its table of targets stays in view."""
    lines: list[str] = []
    folding = False
    for line in record.splitlines():
        if line.startswith("Measured "):
            folding = False
        if line.strip() == EVERY_MEASUREMENT:
            folding = True
            lines.append('??? info "Every measurement"')
            continue
        lines.append(f"    {line}" if folding and line else line)
    return "\n".join(lines) + "\n"
