"""Helpers for the console's browser tests: screenshots as artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.console import ARTIFACTS

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Write the page as test-artifacts/console/<name>.png (MAAS_TEST_ARTIFACTS moves the folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def fits_the_width(page: Page) -> bool:
    """Whether the page lays out within the viewport's width: no sideways scrolling."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))
