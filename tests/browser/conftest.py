"""The browser tier: the web console in Debian's Chromium, headless, driven by Playwright for Python.

Each module gets one local stack holding every kind of model the console shows (tests.support.console);
each test gets a fresh browser context at 1280x800 on the console's page. The system browser is launched by
path: Playwright's own browser download cannot work here, and `make test` installs Debian's chromium.

Any console error or uncaught page error fails the test that caused it, unless the test declares it with
`console_errors.expect(pattern)`: Chrome logs "Failed to load resource" for every non-2xx fetch, so a test
that shows an API refusal on purpose says which one it expects.

The environment is managed as the integration tier manages it (tests/integration/conftest.py): the module's
stack sets its own dummy credentials and endpoint, and the developer's AWS settings are removed meanwhile.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from maas.local import LocalStack
from maas.registry import Manifest
from tests.integration import conftest as integration_tier
from tests.support.console import TrainedConsoleModels, publish_console_models, train_console_models

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

    from maas.training import TrainedModel

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
# As root with no sandbox support, and quiet: the machine has no network for Chromium's own background calls.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


# The integration tier's environment handling, as this tier's own (see the module docstring).
isolated_module_env = integration_tier.isolated_module_env
aws_credentials = integration_tier.aws_credentials


@dataclass(frozen=True)
class ConsoleStack:
    stack: LocalStack
    models: dict[str, Manifest]

    @property
    def url(self) -> str:
        """The console's address."""
        return f"{self.stack.url}/console/"

    @property
    def api(self) -> str:
        return self.stack.url


@pytest.fixture(scope="session")
def console_models(seed_model: TrainedModel, digits_model: TrainedModel) -> TrainedConsoleModels:
    return train_console_models(seed_model, digits_model)


@pytest.fixture(scope="module")
def console(
    isolated_module_env: pytest.MonkeyPatch, console_models: TrainedConsoleModels
) -> Iterator[ConsoleStack]:
    with LocalStack(port=0, embedded=True) as stack:
        yield ConsoleStack(stack, publish_console_models(stack.registry, console_models))


# Per module, not per session: Playwright's sync API keeps an asyncio loop running while it is started, and
# any later test on the same worker that calls asyncio.run() (the kserve client does) would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM}: Debian's chromium is not installed "
            "(`make test` installs it: apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class ConsoleErrors:
    """Every console error and page error a test's page produced, and the ones the test said to expect."""

    seen: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect(self, pattern: str) -> None:
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [message for message in self.seen if not any(p.search(message) for p in self.expected)]


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture
def page(browser: Browser, console: ConsoleStack, console_errors: ConsoleErrors) -> Iterator[Page]:
    """A fresh 1280x800 page; the test fails on any console or page error it did not expect."""
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    opened.on(
        "console",
        lambda message: (
            console_errors.seen.append(f"console: {message.text} at {message.location.get('url')}")
            if message.type == "error"
            else None
        ),
    )
    opened.on("pageerror", lambda error: console_errors.seen.append(f"page error: {error}"))
    yield opened
    context.close()
    unexpected = console_errors.unexpected()
    if unexpected:
        pytest.fail("the browser reported errors:\n" + "\n".join(unexpected))
