"""Turns pydantic validation errors into one client-facing line: where, what was expected, what type came.

The offending value itself is never included, so a message can be logged and returned safely.
"""

from __future__ import annotations

from pydantic import ValidationError

from maas.config import ENV_MAX_JSON_DEPTH

MAX_REPORTED_ERRORS = 3
_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def describe_validation_error(
    exc: ValidationError, subject: str = "request body", *, max_json_depth: int | None = None
) -> str:
    """`max_json_depth`, when given, is the limit to name if the parser stopped at its recursion limit."""
    messages = []
    for error in exc.errors(include_url=False)[:MAX_REPORTED_ERRORS]:
        where = location(error["loc"]) or subject
        kind = error["type"]
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "parse error")
            if max_json_depth is not None and str(detail).startswith("recursion limit exceeded"):
                messages.append(
                    f"{subject}: expected JSON nested at most {max_json_depth} levels deep "
                    f"({ENV_MAX_JSON_DEPTH}), got deeper ({detail})"
                )
            else:
                messages.append(f"{subject}: expected JSON, got invalid JSON ({detail})")
        elif kind == "missing":
            messages.append(f"{where}: required field is missing")
        elif kind == "extra_forbidden":
            messages.append(f"{where}: unknown field")
        elif kind == "too_short":
            messages.append(f"{where}: expected at least {error['ctx']['min_length']} item(s), got none")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            messages.append(f"{where}: expected a JSON object, got {json_type(error['input'])}")
        else:
            msg = error["msg"]
            messages.append(f"{where}: {msg[0].lower()}{msg[1:]}, got {json_type(error['input'])}")
    remaining = exc.error_count() - MAX_REPORTED_ERRORS
    if remaining > 0:
        messages.append(f"and {remaining} more")
    return "; ".join(messages)


def location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
