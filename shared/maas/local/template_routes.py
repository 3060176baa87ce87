"""Which template route a request reaches, as an HTTP API selects it.

Literal segments beat {variable} ones, which beat a greedy {proxy+}, left to right; a route for the
request's own method beats an ANY route; `$default` catches what nothing else matches. One local port
serves the HTTP API and the streaming REST API (separate hosts on AWS): where both have a route for a
request, the streaming one answers it, so `make serve` streams what the streaming endpoint streams.
Path variables are URL-decoded, and a greedy one takes the rest of the path (at least one non-empty
segment).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from maas.local.sam import ANY_METHOD, DEFAULT_ROUTE, TemplateRoute

_LITERAL, _VARIABLE, _GREEDY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request reached, with the values of its path variables (URL-decoded)."""

    route: TemplateRoute
    path_parameters: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: int
    text: str


@dataclass(frozen=True, slots=True)
class _CompiledRoute:
    route: TemplateRoute
    segments: tuple[_Segment, ...]

    @property
    def rank(self) -> tuple[tuple[int, ...], int, int]:
        """Lower is more specific: literal beats {variable} beats {greedy+}, left to right; verb beats ANY;
        then a streaming route beats its HTTP API twin."""
        segments = tuple(s.kind for s in self.segments)
        return segments, int(self.route.method == ANY_METHOD), int(not self.route.streaming)


class TemplateRoutes:
    """The template's routes, matched to a request as HTTP API does: the most specific matching path and
    method, `$default` last."""

    def __init__(self, routes: Iterable[TemplateRoute]) -> None:
        self._compiled: list[_CompiledRoute] = []
        self._default: TemplateRoute | None = None
        for route in routes:
            if route.path == DEFAULT_ROUTE:
                self._default = route
            else:
                self._compiled.append(_CompiledRoute(route, tuple(_compile(route.path))))

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        request_segments = raw_path.split("/")[1:]
        candidates: list[tuple[_CompiledRoute, dict[str, str]]] = []
        for compiled in self._compiled:
            if compiled.route.method not in (method, ANY_METHOD):
                continue
            parameters = _match_segments(compiled.segments, request_segments)
            if parameters is not None:
                candidates.append((compiled, parameters))
        if candidates:
            best, parameters = min(candidates, key=lambda c: c[0].rank)
            return RouteMatch(best.route, parameters)
        if self._default is not None:
            return RouteMatch(self._default, {})
        return None


def _compile(path: str) -> list[_Segment]:
    segments = []
    for text in path.split("/")[1:]:
        if text.startswith("{") and text.endswith("+}"):
            segments.append(_Segment(_GREEDY, text[1:-2]))
        elif text.startswith("{") and text.endswith("}"):
            segments.append(_Segment(_VARIABLE, text[1:-1]))
        else:
            segments.append(_Segment(_LITERAL, text))
    return segments


def _match_segments(pattern: Sequence[_Segment], segments: Sequence[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, segment in enumerate(pattern):
        if segment.kind == _GREEDY:
            rest = segments[index:]
            if not rest or not any(rest):
                return None
            parameters[segment.text] = unquote("/".join(rest))
            return parameters
        if index >= len(segments):
            return None
        value = unquote(segments[index])
        if segment.kind == _LITERAL:
            if value != segment.text:
                return None
        elif not value:
            return None
        else:
            parameters[segment.text] = value
    return parameters if len(pattern) == len(segments) else None
