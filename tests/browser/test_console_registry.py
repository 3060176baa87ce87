"""The console's registry pages in the browser: the models list, a version with its card, a diff, and an alias
moved past the promotion gate and back, each seen as a reader sees it.

The stack is the browser tier's (tests/support/console.py): seed-mlp v1 at `production` and a worse v2, and
the digits classifier with its card, plots and confusion matrix. Every page is also drawn at phone width,
where it must not scroll sideways.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from playwright.sync_api import expect

from maas.registry.admin import RegistryAdmin
from maas.registry.documents import CanarySplit
from tests.browser.conftest import PHONE
from tests.support.browser import screenshot
from tests.support.console import DIGITS, SEED

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import ConsoleStack


def fits_the_width(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_models_list_shows_every_model_with_its_aliases_latest_version_and_primary_metric(
    page: Page, console: ConsoleStack
) -> None:
    page.goto(console.url + "#/")

    table = page.get_by_test_id("models-table")
    expect(table).to_be_visible()
    for name in console.models:
        expect(page.get_by_test_id(f"model-{name}")).to_be_visible()
    seed = page.get_by_test_id(f"model-{SEED}")
    expect(seed.get_by_test_id("alias-production")).to_have_text("production → v1")
    expect(seed.get_by_role("link", name="v2")).to_have_attribute("href", f"#/models/{SEED}/versions/2")
    expect(seed).to_contain_text("mse")
    expect(seed).to_contain_text("regression")
    expect(seed.get_by_role("link", name="Playground")).to_have_attribute("href", f"#/models/{SEED}/play")
    digits = page.get_by_test_id(f"model-{DIGITS}")
    accuracy = console.models[DIGITS].metrics["accuracy"]
    expect(digits.get_by_test_id("primary-value")).to_have_text(f"{accuracy:.4g}")
    screenshot(page, "models")

    page.set_viewport_size(PHONE)
    expect(table).to_be_visible()
    assert fits_the_width(page)
    screenshot(page, "models-phone")


def test_a_version_page_renders_its_card_with_its_plots_loaded_and_its_evaluation(
    page: Page, console: ConsoleStack
) -> None:
    manifest = console.models[DIGITS]
    page.goto(console.url + f"#/models/{DIGITS}/versions/{manifest.version}")

    card = page.get_by_test_id("model-card")
    expect(card).to_be_visible()
    plots = [path for path in manifest.report_files if path.endswith(".png")]
    expect(page.get_by_test_id("plots-status")).to_have_text(f"{len(plots)} of {len(plots)} plots loaded.")
    widths = page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=model-card] img')]"
        ".map((image) => [image.src, image.naturalWidth])"
    )
    assert len(widths) == len(plots)
    assert all(src.startswith("blob:") and width > 0 for src, width in widths), widths
    expect(page.get_by_test_id("confusion-matrix").locator("tbody tr")).to_have_count(
        len(manifest.labels or [])
    )
    expect(page.get_by_test_id("per-class-table").locator("tbody tr")).to_have_count(
        len(manifest.labels or [])
    )
    checksums = page.get_by_test_id("checksums-table")
    for artifact in manifest.artifacts:
        expect(checksums).to_contain_text(artifact.sha256)
    # An alias points at it: the page says so rather than sending an archive the API would refuse.
    expect(page.get_by_test_id("archive-status")).to_contain_text("production")
    expect(page.get_by_test_id("archive")).to_be_hidden()
    screenshot(page, "version")

    page.get_by_label("Key").fill("reviewed")
    page.get_by_label("Value").fill("yes")
    page.get_by_label("Value").press("Enter")
    expect(page.get_by_test_id("tags")).to_contain_text("reviewed=yes")
    tags_panel = page.locator("section", has=page.get_by_role("heading", name="Tags", exact=True))
    expect(tags_panel.get_by_test_id("curl")).to_contain_text("-X PUT --aws-sigv4")
    page.get_by_role("button", name="Remove tag reviewed").click()
    expect(page.get_by_test_id("tags")).to_have_text("No tags.")

    page.set_viewport_size(PHONE)
    assert fits_the_width(page)
    screenshot(page, "version-phone")


def test_a_diff_chosen_on_the_model_page_shows_both_versions_side_by_side(
    page: Page, console: ConsoleStack
) -> None:
    page.goto(console.url + f"#/models/{SEED}")
    by_mse = page.get_by_test_id("sort-mse")
    by_mse.focus()
    by_mse.press("Enter")
    expect(page.locator("th", has=by_mse)).to_have_attribute("aria-sort", "ascending")
    expect(page.get_by_test_id("versions-table").locator("tbody tr").first).to_have_attribute(
        "data-testid", "version-row-1"
    )
    page.get_by_test_id("sort-mse").press("Enter")
    expect(page.get_by_test_id("versions-table").locator("tbody tr").first).to_have_attribute(
        "data-testid", "version-row-2"
    )
    page.get_by_test_id("diff-with-1").click()
    expect(page.get_by_test_id("diff-b")).to_be_focused()
    page.get_by_test_id("diff-b").select_option("2")
    page.get_by_test_id("diff-go").click()

    expect(page).to_have_url(re.compile(rf"#/models/{SEED}/diff/1/2$"))
    metrics = page.get_by_test_id("diff-metrics")
    mse_row = metrics.locator("tr", has=page.get_by_role("rowheader", name="mse", exact=True))
    v1 = console.models[SEED].metrics["mse"]
    expect(mse_row.locator("td").first).to_have_text(f"{v1:.4g}")
    expect(page.get_by_test_id("diff-same-signature")).to_be_visible()
    expect(page.get_by_test_id("curl")).to_contain_text(f"/registry/models/{SEED}/diff?a=1&b=2")
    screenshot(page, "diff")


def test_a_regression_needs_force_with_a_reason_then_rolls_back_each_move_in_the_alias_history(
    page: Page, console: ConsoleStack
) -> None:
    RegistryAdmin(console.stack.registry).set_alias(
        SEED, "staging", 1, canary=CanarySplit(version=2, weight=0.25), reason="canary", by="tests"
    )
    page.goto(console.url + f"#/models/{SEED}")
    expect(page.get_by_test_id("split-staging")).to_have_attribute(
        "aria-label", "staging: v1 takes 75% of the traffic, canary v2 25%"
    )
    widths = page.get_by_test_id("split-staging").evaluate(
        "(bar) => [...bar.children].map((part) => part.getBoundingClientRect().width / bar.clientWidth)"
    )
    assert [round(share, 2) for share in widths] == [0.75, 0.25]
    history = page.get_by_test_id("history-production")
    expect(history).to_be_visible()
    moves = history.locator("tbody tr").count()

    page.get_by_test_id("promote-version").select_option("2")
    page.get_by_test_id("gate-check").click()
    verdict = page.get_by_test_id("gate-verdict-text")
    expect(verdict).to_have_attribute("data-verdict", "needs_force")
    expect(page.get_by_test_id("gate-message")).to_contain_text("mse")
    # The gate said no: there is no plain promote to press, only a forced one that asks why.
    expect(page.get_by_test_id("promote")).to_have_count(0)
    screenshot(page, "model-gate")

    page.get_by_test_id("force-reason").fill("accepting v2 for the console test")
    page.get_by_test_id("force-promote").click()
    expect(page.get_by_test_id("action-done")).to_have_text("Promoted v2 to production (forced).")
    expect(history.locator("tbody tr")).to_have_count(moves + 1)
    newest = history.locator("tbody tr").first
    expect(newest).to_contain_text("accepting v2 for the console test")
    expect(newest.locator("td").nth(2)).to_have_text("v1")
    expect(newest.locator("td").nth(3)).to_have_text("v2")

    page.get_by_test_id("rollback-reason").fill("v2 regressed after all")
    page.get_by_test_id("rollback").click()
    expect(page.get_by_test_id("rollback-done")).to_have_text("Rolled production back to v1.")
    expect(history.locator("tbody tr")).to_have_count(moves + 2)
    newest = history.locator("tbody tr").first
    expect(newest).to_contain_text("v2 regressed after all")
    expect(newest.locator("td").nth(2)).to_have_text("v2")
    expect(newest.locator("td").nth(3)).to_have_text("v1")
    expect(page.get_by_test_id("alias-production")).to_have_text("production → v1")
    assert console.stack.registry.aliases(SEED)["production"].version == 1
    screenshot(page, "model")

    page.set_viewport_size(PHONE)
    assert fits_the_width(page)
    screenshot(page, "model-phone")
