"""The console's frame in the browser: its policy holds, and it signs registry calls as API Gateway wants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.browser import screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import ConsoleErrors, ConsoleStack


def test_the_page_is_served_under_a_policy_that_blocks_inline_script(
    page: Page, console: ConsoleStack, console_errors: ConsoleErrors
) -> None:
    response = page.goto(console.url + "#/settings")
    assert response is not None and response.ok
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    page.get_by_test_id("key-source").wait_for()

    console_errors.expect(r"Content Security Policy")
    ran = page.evaluate(
        """() => new Promise((resolve) => {
            window.inlineRan = false;
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.append(script);
            setTimeout(() => resolve(window.inlineRan), 50);
        })"""
    )
    assert ran is False
    assert any("Content Security Policy" in message for message in console_errors.seen)


def test_registry_calls_are_signed_with_the_local_key_and_a_wrong_key_gets_api_gateway_s_refusal(
    page: Page, console: ConsoleStack, console_errors: ConsoleErrors
) -> None:
    page.goto(console.url + "#/settings")
    assert (
        page.get_by_test_id("key-source").inner_text()
        == "Registry calls are signed with testing (local stack)."
    )
    names = page.evaluate(
        "async () => (await (await import('./api.js')).getJson('/registry/models')).models.map((m) => m.name)"
    )
    assert sorted(names) == sorted(console.models)
    screenshot(page, "settings")

    page.get_by_label("Access key ID").fill("testing")
    page.get_by_label("Secret access key").fill("not-the-secret")
    page.get_by_label("Secret access key").press("Enter")
    assert (
        page.get_by_test_id("key-source").inner_text() == "Registry calls are signed with testing (this tab)."
    )
    console_errors.expect(r"status of 403")
    refusal = page.evaluate(
        """async () => {
            const api = await import('./api.js');
            try { await api.getJson('/registry/models'); return null; }
            catch (error) { return [error.status, error.message]; }
        }"""
    )
    assert refusal is not None and refusal[0] == 403
    assert refusal[1].startswith("The request signature we calculated does not match")
