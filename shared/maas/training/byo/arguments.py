"""What a user names for a module export, parsed and checked: tensor specs (`--input`, `--output`) and the
`package.module:factory` that builds the module (`--module`)."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from maas.datatypes import V2_NAMES
from maas.errors import InvalidInput
from maas.signature import TensorSpec
from maas.training.byo.foreign_code import first_line

__all__ = ["load_factory", "parse_tensor_spec"]

_SPEC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})")
_SPEC_FORMAT = "NAME:DATATYPE:[d0,d1,...] with -1 for a dynamic dimension, e.g. input:FP32:[-1,10]"


def parse_tensor_spec(text: str, *, argument: str = "--input") -> TensorSpec:
    """`NAME:DATATYPE:[d0,d1,...]`, e.g. `input:FP32:[-1,10]`; the datatype is any V2 name, any case."""
    name, _, rest = text.partition(":")
    datatype, colon, shape_text = rest.partition(":")
    if not colon:
        raise InvalidInput(f"{argument}: expected {_SPEC_FORMAT}, got {_quoted(text)}")
    if not _SPEC_NAME.fullmatch(name):
        raise InvalidInput(
            f"{argument}: name: expected 1-64 letters, digits or '_' not starting with a digit "
            f"(it names a graph tensor and its axes), got {_quoted(name)}"
        )
    if datatype.upper() not in V2_NAMES:
        raise InvalidInput(
            f"{argument}: datatype of '{name}': expected one of {list(V2_NAMES)}, got {_quoted(datatype)}"
        )
    return TensorSpec(name=name, datatype=datatype.upper(), shape=_parse_shape(shape_text, name, argument))


def load_factory(
    target: str, *, argument: str = "--module", app_dir: Path | None = None
) -> Callable[[], torch.nn.Module]:
    """The no-argument callable (class or function) `package.module:factory` names, checked on each call
    to return a torch.nn.Module.

    `app_dir` goes first on sys.path (like uvicorn's --app-dir): a `maas` console script does not put
    the working directory there, so a module beside the user's weights would otherwise not import."""
    match = _TARGET.fullmatch(target)
    if match is None:
        raise InvalidInput(
            f"{argument}: expected package.module:factory (a class or function that takes no arguments), "
            f"got {_quoted(target)}"
        )
    module_name, attribute = match["module"], match["attr"]
    if app_dir is not None and str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise InvalidInput(
                f"{argument}: expected an importable module '{module_name}', found none on sys.path"
            ) from None
        raise InvalidInput(f"{argument}: importing '{module_name}' failed: {first_line(exc)}") from exc
    except Exception as exc:
        # The user's own code runs at import: any error is theirs, and the chained traceback helps them.
        raise InvalidInput(f"{argument}: importing '{module_name}' failed: {first_line(exc)}") from exc
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InvalidInput(
                f"{argument}: expected '{module_name}' to define '{attribute}', got no attribute '{part}'"
            )
        found = getattr(found, part)
    if not callable(found):
        raise InvalidInput(
            f"{argument}: expected '{target}' to be a class or function, got {type(found).__name__}"
        )
    required = _required_parameters(found)
    if required:
        raise InvalidInput(
            f"{argument}: expected '{target}' to be callable with no arguments, "
            f"got one that requires {required}"
        )
    factory: Callable[[], object] = found

    def build() -> torch.nn.Module:
        try:
            built = factory()
        except Exception as exc:
            raise InvalidInput(f"{argument}: calling '{target}()' failed: {first_line(exc)}") from exc
        if not isinstance(built, torch.nn.Module):
            raise InvalidInput(
                f"{argument}: expected '{target}()' to return a torch.nn.Module, got {type(built).__name__}"
            )
        return built

    return build


def _parse_shape(text: str, name: str, argument: str) -> list[int]:
    expected = "a list of sizes >= 1 or -1 (dynamic), e.g. [-1,10]"
    stripped = text.strip()
    try:
        shape = json.loads(stripped) if stripped.startswith("[") else None
    except ValueError:
        shape = None
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and (dim == -1 or dim >= 1) for dim in shape
    ):
        raise InvalidInput(f"{argument}: shape of '{name}': expected {expected}, got {_quoted(text)}")
    return shape


def _required_parameters(factory: Callable[..., object]) -> list[str]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []  # no introspectable signature (some builtins): calling it will tell
    return [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _quoted(text: str, limit: int = 100) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
