"""One JSON value, read the same way on every event path (jsonl lines, async bodies), and its kind in words.

orjson reads nearly every real document; what it refuses goes to the standard library, which also reads
NaN, Infinity and -Infinity, numbers beyond float64 (as +-inf) and integers of any length. The datatype a
value lands in decides what is allowed (FP inputs take NaN and inf, integers refuse them).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# The integers orjson reads as integers; past them it reads a float, and the fallback parser agrees.
_JSON_INT_RANGE = range(-(2**63), 2**64)
_JSON_INT_DIGITS = 20


class NotJson(ValueError):
    """Text that no JSON reading can make a value of; `got` says what arrived, never quoting it."""

    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def loads_json(raw: bytes | str) -> Any:
    """One JSON value, or NotJson. Integers outside 64 bits become floats on both parsers, so a value never
    depends on which parser read it."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _loads_what_orjson_refuses(raw)


def _loads_what_orjson_refuses(raw: bytes | str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NotJson("bytes that are not UTF-8 text") from None
    if not raw.strip():
        raise NotJson("nothing (an empty text)")
    try:
        return json.loads(raw, parse_int=_json_int)
    except RecursionError:
        raise NotJson("JSON nested too deep to read") from None
    except ValueError:
        raise NotJson("text that is not JSON") from None


def _json_int(text: str) -> int | float:
    # int() of thousands of digits is refused (and quadratic); float() reads any length, giving inf past
    # float64, as orjson does for integers outside 64 bits.
    if len(text) <= _JSON_INT_DIGITS:
        value = int(text)
        if value in _JSON_INT_RANGE:
            return value
    return float(text)


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, as messages name it ("got a JSON object")."""
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")
