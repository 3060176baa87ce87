"""The model reference grammar shared by the CLI, HTTP paths and events.

name                      the default alias, or the latest version when the alias is unset
name@alias                an alias ("latest" is the newest committed version)
name/versions/<n>         an explicit version
name/versions/<alias>     an alias, spelled as a path (V2 routes use this form)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maas.errors import InvalidInput

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# ASCII digits only: str.isdigit() also accepts '²' and other scripts' digits, which int() rejects.
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")
ALIAS_PATTERN = NAME_PATTERN
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference. Exactly one of `version` and `alias` is set, or neither (the default)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/versions/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

    @property
    def is_pinned(self) -> bool:
        """A pinned reference always means the same immutable version."""
        return self.version is not None


def validate_name(name: str, *, field: str = "model name") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"{field}: expected 1-64 characters of [a-z0-9._-] starting with a letter or digit, "
            f"got {describe_name(name)}"
        )
    return name


def parse_version_selector(name: str, selector: str | None) -> ModelRef:
    """Build a reference from a name plus the `{v}` part of a V2 path: a number or an alias."""
    validate_name(name)
    if selector is None or selector == "":
        return ModelRef(name)
    if VERSION_PATTERN.fullmatch(selector):
        return ModelRef(name, version=int(selector))
    if selector[:1].isdigit() or not ALIAS_PATTERN.fullmatch(selector):
        raise InvalidInput(
            "model version: expected an integer from 1 (at most 18 digits) or an alias of [a-z0-9._-] "
            f"starting with a letter, got {describe_name(selector)}"
        )
    return ModelRef(name, alias=selector)


def parse_ref(text: str) -> ModelRef:
    """Parse any of the four reference forms."""
    if "@" in text:
        name, _, alias = text.partition("@")
        if not alias:
            raise InvalidInput("model reference: expected an alias after '@', got nothing")
        ref = parse_version_selector(name, alias)
        if ref.version is not None:
            raise InvalidInput(
                "model reference: expected an alias after '@'; use name/versions/<n> for numbers"
            )
        return ref
    if "/" in text:
        name, sep, selector = text.partition("/versions/")
        if not sep or not selector or "/" in selector:
            raise InvalidInput(
                "model reference: expected name, name@alias or name/versions/<n|alias>, "
                f"got {describe_name(text)}"
            )
        return parse_version_selector(name, selector)
    return parse_version_selector(text, None)


def describe_name(value: str) -> str:
    """A name or reference as an error message shows it: quoted, or only its length when it is long."""
    # Names are identifiers, not payload values, but cap them so a hostile path cannot flood the logs.
    return repr(value) if len(value) <= 80 else f"a string of {len(value)} characters"
