"""The web console's static site, served by the local gateway at /console beside the API it calls.

The console is plain files (maas/local/console_static: HTML, ES modules, CSS and pinned vendored libraries)
that call the stack's own routes from the browser, so serving it needs no server of its own: the gateway
answers /console paths before it routes to a function. Decisions worth knowing:

- Only files listed when the site is built are served, by exact name: a request path is never joined onto
  the folder, so no `..`, encoded slash or symlink can reach outside it.
- Every answer carries a strict Content-Security-Policy (no inline script or style, no other origin), and
  the headers that stop sniffing, framing and referrer leaks.
- `/console/config.json` tells the page its region and, only when the stack signs with the embedded store's
  well-known dummy pair (testing/testing), that pair, so the console can sign registry calls with no key
  typed in. A real key is never put in a page: with one, the console asks for it and keeps it in the tab.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from maas.local.http_server import GatewayResponse, IncomingRequest, gateway_message

CONSOLE_PREFIX = "/console"
CONFIG_PATH = f"{CONSOLE_PREFIX}/config.json"
STATIC_ROOT = Path(__file__).parent / "console_static"
INDEX_FILE = "index.html"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # blob: card plots and uploads shown from fetched bytes; data: canvas snapshots.
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
_READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str


class ConsoleSite:
    """Answers /console requests from the files under `root`; `config` is called for each config.json."""

    def __init__(self, config: Callable[[], Mapping[str, Any]], root: Path = STATIC_ROOT) -> None:
        self._config = config
        self._assets = _read_assets(root)
        if INDEX_FILE not in self._assets:
            raise ValueError(f"console: expected {root / INDEX_FILE}, found none")

    def answer(self, request: IncomingRequest) -> GatewayResponse | None:
        """The console's answer to `request`, or None when the path is not the console's."""
        path = urlsplit(request.target).path
        if path != CONSOLE_PREFIX and not path.startswith(f"{CONSOLE_PREFIX}/"):
            return None
        if request.method not in _READ_METHODS:
            response = gateway_message(
                405,
                "Method Not Allowed",
                f"method: expected GET or HEAD for the console, got {request.method}",
            )
            response.headers.append(("Allow", "GET, HEAD"))
            return _secured(response)
        if path == CONSOLE_PREFIX:
            # Relative asset URLs in index.html resolve against /console/, not /.
            return _secured(GatewayResponse(308, [("Location", f"{CONSOLE_PREFIX}/")], b""))
        if path == CONFIG_PATH:
            body = json.dumps(dict(self._config())).encode()
            return _secured(_file(_Asset(body, "application/json")))
        name = path[len(CONSOLE_PREFIX) + 1 :] or INDEX_FILE
        asset = self._assets.get(name)
        if asset is None:
            return _secured(
                gateway_message(
                    404, "Not Found", f"console file: expected one of the console's, got {name[:80]!r}"
                )
            )
        return _secured(_file(asset))


def _read_assets(root: Path) -> dict[str, _Asset]:
    assets = {}
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.is_symlink() or file.name.startswith("."):
            continue
        name = file.relative_to(root).as_posix()
        content_type = (
            _CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        assets[name] = _Asset(file.read_bytes(), content_type)
    return assets


def _file(asset: _Asset) -> GatewayResponse:
    # no-cache: the browser revalidates each time, so after a stack restart (files are read at start) a reload
    # shows the edited console rather than a cached one.
    headers = [("Content-Type", asset.content_type), ("Cache-Control", "no-cache")]
    return GatewayResponse(200, headers, asset.body)


def _secured(response: GatewayResponse) -> GatewayResponse:
    response.headers.extend(SECURITY_HEADERS)
    return response
