"""A model's chat template rendered as transformers renders it, in Jinja's immutable sandbox.

The environment mirrors transformers' `_cached_compile_jinja_template` (5.x): trim_blocks and lstrip_blocks,
the loopcontrols extension, `raise_exception`, `strftime_now`, a `tojson` that leaves non-ASCII text and
HTML characters alone, and a `namespace` that refuses underscore-prefixed attributes. The `{% generation %}`
tag (transformers' assistant-token tracking) renders its body unchanged. The template comes with the model
and the messages from the client, so both are treated as untrusted: the sandbox refuses attribute access
to Python internals, and immutable means a template cannot change the messages it is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from maas.errors import IntegrityError, InvalidInput

# What a client's messages can make a template (or the Python it reaches) raise while rendering.
RENDER_ERRORS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)
# Long enough for any template author's message; cut so a runaway one stays one line.
REASON_CHARACTERS = 300


class ChatTemplate:
    """One model's template, compiled once when the model loads."""

    def __init__(self, source: str, *, bos_token: str | None, eos_token: str | None, what: str) -> None:
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise IntegrityError(
                f"{what}: expected a Jinja chat template, got one that does not compile",
                detail=f"{type(exc).__name__}: {exc}",
            ) from None
        self._special_tokens = {"bos_token": bos_token or "", "eos_token": eos_token or ""}

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        **context: Any,
    ) -> str:
        """The prompt text; InvalidInput naming `messages` when the template refuses them.

        `context` carries what some templates read besides the messages (tools, documents)."""
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                **self._special_tokens,
                **context,
            )
        except RENDER_ERRORS as exc:
            raise InvalidInput(f"messages: the model's chat template refused them: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The error in one line: a template's own raise_exception text says what it expected."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = "template error" if isinstance(exc, jinja2.TemplateError) else type(exc).__name__
    return f"{kind}: {text[:REASON_CHARACTERS]}" if text else kind


class _RefusingSandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox answers an unsafe attribute with an undefined value that prints as ""; this one
    refuses at once, so a template reaching for Python internals fails loudly instead of rendering on."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe"
        )


def _environment() -> ImmutableSandboxedEnvironment:
    environment = _RefusingSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    environment.globals["namespace"] = _Namespace
    return environment


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters for embedding in a page; a prompt wants the text as it is.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _Namespace(jinja2.utils.Namespace):
    """Jinja's namespace without underscore-prefixed attributes, the way into Python's internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, attributes = args[0], dict(*args[1:], **kwargs)
        for name in attributes:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attributes)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                "a chat template cannot set an underscore-prefixed attribute on a namespace"
            )


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: transformers marks assistant tokens with it; rendering for
    generation needs only the body."""

    tags = {"generation"}  # noqa: RUF012 - jinja2 reads it from the class

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)
