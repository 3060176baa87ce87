"""The JSONPath of the Amazon States Language, as far as the local interpreter goes: paths, reference paths
and the payload templates (Parameters, ItemSelector, ResultSelector) built from them.

A path here is `$` (the state's data) or `$$` (the context object) followed by `.name`, `['name']` or
`[index]` steps: what template.yaml uses. Wildcards, filters, slices, `..` and the intrinsic functions
(`States.Format(...)`) are refused when a definition is loaded (`PathSyntaxError`), never half-run.

At run time a path that selects nothing is Step Functions' States.Runtime error (`PathNotFound`): AWS fails
the execution then, and no Retry or Catch on States.ALL applies.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PATH_SUFFIX = ".$"
_NAME = re.compile(r"\.([^.\[\]'\"*?@(),:\s]+)")
_QUOTED = re.compile(r"\[(?:'([^']*)'|\"([^\"]*)\")\]")
_INDEX = re.compile(r"\[(\d+)\]")


class PathSyntaxError(ValueError):
    """A path the local interpreter does not evaluate (a wildcard, a filter, an intrinsic function)."""


class PathNotFound(LookupError):
    """A path selects nothing in the data it is applied to (States.Runtime in AWS)."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path: whether it reads the context object (`$$`) and its steps (names and indexes)."""

    text: str
    context: bool
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str, *, context_allowed: bool = True) -> JsonPath:
        if not isinstance(text, str):
            raise PathSyntaxError(f"expected a path string starting with $, got {text!r}")
        if text.startswith("States."):
            raise PathSyntaxError(f"intrinsic function {text.split('(', 1)[0]} is not supported locally")
        if text.startswith("$$"):
            if not context_allowed:
                raise PathSyntaxError(f"expected a path of the state's data ($...), got {text!r}")
            context, rest = True, text[2:]
        elif text.startswith("$"):
            context, rest = False, text[1:]
        else:
            raise PathSyntaxError(f"expected a path starting with $, got {text!r}")
        steps: list[str | int] = []
        position = 0
        while position < len(rest):
            for pattern in (_NAME, _QUOTED, _INDEX):
                match = pattern.match(rest, position)
                if match is None:
                    continue
                if pattern is _INDEX:
                    steps.append(int(match.group(1)))
                else:
                    steps.append(next(group for group in match.groups() if group is not None))
                position = match.end()
                break
            else:
                raise PathSyntaxError(
                    f"path {text!r}: only .name, ['name'] and [index] steps are supported locally "
                    f"(no wildcards, filters, slices or functions), got {rest[position:]!r}"
                )
        return cls(text, context, tuple(steps))

    def read(self, data: Any, context: Any = None) -> Any:
        """The value the path selects; PathNotFound when it selects nothing."""
        value = context if self.context else data
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    raise PathNotFound(f"the JSONPath {self.text!r} could not be found in the input")
            elif not isinstance(value, dict) or step not in value:
                raise PathNotFound(f"the JSONPath {self.text!r} could not be found in the input")
            value = value[step]
        return value


def reference_path(text: str) -> JsonPath:
    """A Reference Path (ResultPath): the state's data, names only, so it can be written to."""
    path = JsonPath.parse(text, context_allowed=False)
    if any(isinstance(step, int) for step in path.steps):
        raise PathSyntaxError(f"reference path {text!r}: expected names only, no [index] steps")
    return path


def with_result(data: Any, result_path: str | None, result: Any) -> Any:
    """ResultPath: `data` with `result` placed at the path (`$` replaces it, None discards the result).
    Objects missing on the way are created; a step through something that is not an object is
    States.Runtime (PathNotFound)."""
    if result_path is None:
        return data
    path = reference_path(result_path)
    if not path.steps:
        return result
    if not isinstance(data, dict):
        raise PathNotFound(f"ResultPath {result_path!r}: the state's input is not an object")
    output = copy.deepcopy(data)
    node = output
    for step in path.steps[:-1]:
        assert isinstance(step, str)
        child = node.setdefault(step, {})
        if not isinstance(child, dict):
            raise PathNotFound(f"ResultPath {result_path!r}: {step!r} is not an object in the input")
        node = child
    last = path.steps[-1]
    assert isinstance(last, str)
    node[last] = result
    return output


def select(data: Any, path: str | None) -> Any:
    """InputPath / OutputPath / ItemsPath: the selected part of `data`; None selects an empty object."""
    if path is None:
        return {}
    return JsonPath.parse(path, context_allowed=False).read(data)


def check_template(template: Any, where: str) -> None:
    """Raise PathSyntaxError (naming `where` and the key) for a payload template the interpreter cannot
    evaluate: a `.$` key whose value is not a supported path."""
    if isinstance(template, dict):
        for key, value in template.items():
            if isinstance(key, str) and key.endswith(PATH_SUFFIX):
                try:
                    JsonPath.parse(value)
                except PathSyntaxError as exc:
                    raise PathSyntaxError(f"{where}.{key}: {exc}") from None
            else:
                check_template(value, f"{where}.{key}")
    elif isinstance(template, list):
        for index, item in enumerate(template):
            check_template(item, f"{where}[{index}]")


def expand_template(template: Any, data: Any, context: Mapping[str, Any]) -> Any:
    """A payload template evaluated: each `key.$: path` becomes `key: <value at path>`, the rest is copied."""
    if isinstance(template, dict):
        expanded: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(PATH_SUFFIX):
                expanded[key[: -len(PATH_SUFFIX)]] = copy.deepcopy(JsonPath.parse(value).read(data, context))
            else:
                expanded[key] = expand_template(value, data, context)
        return expanded
    if isinstance(template, list):
        return [expand_template(item, data, context) for item in template]
    return template
