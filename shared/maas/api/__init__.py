"""The HTTP edge: V2 wire types, codecs, routes and the multi-format Lambda resolver."""

from __future__ import annotations

from maas.api.http_app import HttpApp, build_http_app

__all__ = ["HttpApp", "build_http_app"]
