"""A route table over a Powertools router that remembers its rules.

Knowing the rules lets an unmatched request be told which methods its path accepts (405 with Allow)
instead of a bare 404, and lets tests compare the served routes with template.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

Handler = TypeVar("Handler", bound=Callable[..., Any])


def remaining_time(router: Router) -> Callable[[], int] | None:
    """The invocation's clock (milliseconds left), when Lambda handed over a context; tests may not."""
    context = router.lambda_context
    return None if context is None else context.get_remaining_time_in_millis


def json_response(
    body: str | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response[Any]:
    text = body.decode() if isinstance(body, bytes) else body
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=text, headers=headers
    )


class RouteTable:
    def __init__(self) -> None:
        self.router = Router()
        self.rules: list[tuple[str, str]] = []
        self._patterns: list[tuple[str, re.Pattern[str]]] = []

    def add(self, method: str, *rules: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for rule in rules:
                self.router.route(rule, method)(handler)
                self.rules.append((method, rule))
                self._patterns.append((method, re.compile(re.sub(r"<\w+>", "[^/]+", rule) + "$")))
            return handler

        return register

    def methods_for(self, path: str) -> list[str]:
        return sorted({method for method, pattern in self._patterns if pattern.match(path)})
