"""The console's static site as the local gateway serves it: exact files only, strict headers everywhere."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from maas.local.console import CONTENT_SECURITY_POLICY, STATIC_ROOT, ConsoleSite
from maas.local.http_server import GatewayResponse, IncomingRequest

CONFIG = {"region": "eu-west-1", "credentials": None, "signedRoutes": ["GET /registry/models"]}


def ask(site: ConsoleSite, target: str, method: str = "GET") -> GatewayResponse | None:
    return site.answer(
        IncomingRequest(method=method, target=target, headers=[], body=b"", source_ip="127.0.0.1")
    )


def header(response: GatewayResponse, name: str) -> str | None:
    values = [value for key, value in response.headers if key.lower() == name.lower()]
    return values[-1] if values else None


@pytest.fixture
def site() -> ConsoleSite:
    return ConsoleSite(lambda: CONFIG)


def test_index_and_assets_are_served_with_their_types_and_a_strict_policy(site: ConsoleSite) -> None:
    index = ask(site, "/console/")
    assert index is not None and index.status == 200
    assert header(index, "Content-Type") == "text/html; charset=utf-8"
    assert index.body == (STATIC_ROOT / "index.html").read_bytes()
    script = ask(site, "/console/app.js")
    assert script is not None and header(script, "Content-Type") == "text/javascript; charset=utf-8"
    for response in (index, script):
        policy = header(response, "Content-Security-Policy")
        assert policy == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in policy and "unsafe" not in policy and "default-src 'none'" in policy
        assert header(response, "X-Content-Type-Options") == "nosniff"
        assert header(response, "X-Frame-Options") == "DENY"


def test_the_bare_prefix_redirects_so_relative_assets_resolve(site: ConsoleSite) -> None:
    response = ask(site, "/console?x=1")
    assert response is not None and response.status == 308
    assert header(response, "Location") == "/console/"


def test_config_is_what_the_gateway_says(site: ConsoleSite) -> None:
    response = ask(site, "/console/config.json")
    assert response is not None and response.status == 200
    assert (
        response.body
        == b'{"region": "eu-west-1", "credentials": null, "signedRoutes": ["GET /registry/models"]}'
    )


@pytest.mark.parametrize(
    "target",
    [
        "/console/../template.yaml",
        "/console/%2e%2e/pyproject.toml",
        "/console/..%2fconsole.py",
        "/console/pages/../../console.py",
        "/console//etc/passwd",
        "/console/missing.js",
        "/console/.hidden",
    ],
)
def test_only_listed_files_are_served(site: ConsoleSite, target: str) -> None:
    response = ask(site, target)
    assert response is not None and response.status == 404
    assert b"console file: expected one of the console's" in response.body
    assert header(response, "Content-Security-Policy") == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_writes_are_refused_with_405(site: ConsoleSite, method: str) -> None:
    response = ask(site, "/console/index.html", method)
    assert response is not None and response.status == 405
    assert header(response, "Allow") == "GET, HEAD"


@pytest.mark.parametrize("target", ["/", "/consoles", "/v2/models/console", "/docs"])
def test_other_paths_are_left_to_the_routes(site: ConsoleSite, target: str) -> None:
    assert ask(site, target) is None


def test_a_folder_without_an_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"index\.html"):
        ConsoleSite(lambda: CONFIG, root=tmp_path)


def test_no_asset_carries_inline_script_or_style() -> None:
    """The CSP would block them in the browser; this names the file before a browser test has to."""
    for file in STATIC_ROOT.rglob("*.html"):
        text = file.read_text()
        assert " style=" not in text and "<style" not in text, file
        assert "<script>" not in text and " on" + "click=" not in text, file


def test_vendored_libraries_are_the_files_their_readme_pins() -> None:
    """vendor/README.md names each file's sha256: an edited or swapped copy fails here."""
    vendor = STATIC_ROOT / "vendor"
    row = re.compile(r"\| `([\w/.-]+\.js)` \|[^|]*\| `([0-9a-f]{64})` \|")
    pinned = dict(row.findall((vendor / "README.md").read_text()))
    shipped = {path.relative_to(vendor).as_posix() for path in vendor.rglob("*.js")}
    assert pinned and set(pinned) == shipped
    for name, digest in pinned.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    for folder in {Path(name).parent for name in pinned}:
        assert (vendor / folder / "LICENSE").is_file(), folder
