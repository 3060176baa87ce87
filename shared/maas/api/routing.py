"""The routes one app serves: rows of the route table registered on a Powertools router, remembered.

Knowing the rules lets an unmatched request be told which methods its path accepts (405 with Allow)
instead of a bare 404, and lets tests compare the served routes with the route table. Every GET rule also
answers HEAD, with the same handler: the HTTP layer (API Gateway, the local gateway) sends no body for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from maas.api.route_table import Route

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


@dataclass(frozen=True, slots=True)
class _Rule:
    method: str
    rule: str
    # The patterns Powertools itself matches with: the REST resolver also accepts trailing slashes.
    exact: re.Pattern[str]
    trailing_slashes: re.Pattern[str]
    # Paths the rule's pattern matches that belong to another route (see ServedRoutes.add).
    unless: re.Pattern[str] | None

    def serves(self, path: str, *, trailing_slashes: bool) -> bool:
        pattern = self.trailing_slashes if trailing_slashes else self.exact
        return bool(pattern.match(path)) and not (self.unless and self.unless.fullmatch(path))


class ServedRoutes:
    def __init__(self) -> None:
        self.router = Router()
        self.served: list[Route] = []
        # (method, Powertools rule) for each route and its HEAD twin.
        self.rules: list[tuple[str, str]] = []
        self._rules: list[_Rule] = []

    def add(self, *routes: Route, unless: str | None = None) -> Callable[[Handler], Handler]:
        """Serve `routes` (rows of maas.api.route_table) with the handler, GET's HEAD twin included.

        `unless`: a regex of whole paths that the rules' parameters would match but that are another
        route's, such as GET /v1/models/<name> for /v1/models/m:predict. Such a path is not served here,
        so it answers as any unmatched path does (405 naming the methods that do serve it, or 404)."""
        excluded = None if unless is None else re.compile(unless)

        def register(handler: Handler) -> Handler:
            served = handler if excluded is None else self._guarded(handler, excluded)
            for route in routes:
                rule, methods = route.rule, [str(method) for method in route.methods]
                self.router.route(rule, methods)(served)
                self.served.append(route)
                for each in methods:
                    self.rules.append((each, rule))
                    self._rules.append(
                        _Rule(
                            each,
                            rule,
                            # Powertools' own compilation, so the table and the router never disagree on
                            # which characters a <parameter> takes; REST strips the rule's trailing '/'.
                            APIGatewayHttpResolver._compile_regex(rule),
                            APIGatewayRestResolver._compile_regex(rule.rstrip("/")),
                            excluded,
                        )
                    )
            return handler

        return register

    def methods_for(self, path: str, *, trailing_slashes: bool = False) -> list[str]:
        """The methods that reach a handler for `path`: exactly those an unmatched method's Allow names.

        `trailing_slashes`: match as the REST API resolver does, which ignores them."""
        return sorted(
            {rule.method for rule in self._rules if rule.serves(path, trailing_slashes=trailing_slashes)}
        )

    def _guarded(self, handler: Handler, excluded: re.Pattern[str]) -> Handler:
        router = self.router

        @functools.wraps(handler)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if excluded.fullmatch(router.current_event.path):
                raise NotFoundError()
            return handler(*args, **kwargs)

        return guarded  # type: ignore[return-value]
