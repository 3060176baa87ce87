"""The console's registry pages in the browser: the models list, a version with its card, a diff, and an alias
moved past the promotion gate and back, each seen as a reader sees it.

The stack is the browser tier's (tests/support/console.py): seed-mlp v1 at `production` and a worse v2, and
the digits classifier with its card, plots and confusion matrix. Every page is also drawn at phone width,
where it must not scroll sideways. The module adds `cards`, whose versions carry the cards a reader must be
protected from: a hostile one, and ones whose stored bytes no longer match their manifest.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from maas.registry.admin import RegistryAdmin
from maas.registry.documents import CanarySplit
from tests.browser.conftest import PHONE
from tests.support.browser import fits_the_width, screenshot
from tests.support.console import DIGITS, SEED
from tests.support.models import batch_sum_model

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from maas.registry import Manifest
    from tests.browser.conftest import ConsoleErrors, ConsoleStack

CARDS = "cards"
# Every way a card could try to run script, load something on its own, style the page or take its #view.
HOSTILE_CARD = b"""# A hostile card

<img src=x onerror="window.__pwned = 'img'">

<svg><image href="pwn-svg.png"></image></svg>

<picture><source srcset="pwn-srcset.png"><img src="pwn-picture.png"></picture>

<video poster="pwn-poster.png"></video>

<div id="view">a second view</div>

<style>main { display: none; }</style>

Inline <span style="color: red">styled</span> text and [a link](javascript:window.__pwned='link').

![not a file of this version](pwn-markdown.png)

The card's own words stay.
"""


@pytest.fixture(scope="module")
def cards(console: ConsoleStack) -> dict[str, Manifest]:
    """`cards` v1: the hostile card; v2: a card with two plots, one of whose stored bytes were replaced after
    publishing; v3: a card whose own stored bytes were replaced."""
    registry = console.stack.registry
    digits = console.models[DIGITS]
    plot = next(path for path in digits.report_files if path.endswith(".png"))
    png = registry.read_artifact(digits, digits.artifact(plot))
    files, draft = batch_sum_model()
    hostile = registry.publish(CARDS, {**files, "card.md": HOSTILE_CARD}, draft)
    plotted = b"# Plots\n\n![good](good.png)\n\n![broken](broken.png)\n"
    broken_plot = registry.publish(
        CARDS, {**files, "card.md": plotted, "good.png": png, "broken.png": png}, draft
    )
    broken_card = registry.publish(CARDS, {**files, "card.md": b"# Card\n"}, draft)
    for manifest, path in ((broken_plot, "broken.png"), (broken_card, "card.md")):
        registry.s3.put_object(
            Bucket=registry.bucket,
            Key=registry.version_prefix(CARDS, manifest.version) + path,
            Body=b"not the bytes the manifest describes",
        )
    return {"hostile": hostile, "broken_plot": broken_plot, "broken_card": broken_card}


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


def test_a_promote_sent_after_the_alias_moved_is_refused_and_asks_for_the_gate_again(
    page: Page, console: ConsoleStack, console_errors: ConsoleErrors
) -> None:
    admin = RegistryAdmin(console.stack.registry)
    admin.set_alias(SEED, "race", 1, reason="race start", by="tests")
    page.goto(console.url + f"#/models/{SEED}")
    page.get_by_test_id("promote-version").select_option("2")
    page.get_by_test_id("promote-alias").fill("race")
    page.get_by_test_id("gate-check").click()
    expect(page.get_by_test_id("gate-verdict-text")).to_have_attribute("data-verdict", "needs_force")

    admin.set_alias(SEED, "race", 2, reason="moved behind the page's back", by="tests")
    console_errors.expect(r"status of 409")
    page.get_by_test_id("force-reason").fill("forced against a stale verdict")
    page.get_by_test_id("force-promote").click()

    promote_panel = page.locator("section", has=page.get_by_role("heading", name="Promote", exact=True))
    expect(promote_panel.get_by_test_id("error")).to_contain_text("409: ")
    expect(promote_panel.get_by_test_id("error")).to_contain_text("expected it at version 1")
    expect(page.get_by_test_id("gate-stale")).to_contain_text("check the gate again")
    expect(page.get_by_test_id("force-promote")).to_have_count(0)
    expect(page.get_by_test_id("gate-check")).to_be_focused()
    expect(promote_panel.get_by_test_id("curl")).to_contain_text('"expected_version":1')
    moves = console.stack.registry.aliases(SEED)["race"].history
    assert [move.reason for move in moves] == ["race start", "moved behind the page's back"]
    history = page.get_by_test_id("history-race")
    expect(history.locator("tbody tr")).to_have_count(2)
    expect(history).not_to_contain_text("forced against a stale verdict")


def test_a_hostile_model_card_runs_nothing_loads_nothing_and_styles_nothing(
    page: Page, console: ConsoleStack, cards: dict[str, Manifest]
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(console.url + f"#/models/{CARDS}/versions/{cards['hostile'].version}")

    card = page.get_by_test_id("model-card")
    expect(card).to_contain_text("The card's own words stay.")
    expect(card).to_contain_text("[image not a file of this version: not one of this version's files]")
    expect(page.get_by_test_id("checksums-table")).to_be_visible()
    assert card.locator("img, svg, picture, source, video, style, [style]").count() == 0
    assert card.locator('a[href^="javascript"]').count() == 0
    assert page.evaluate("document.querySelectorAll('#view').length") == 1
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("getComputedStyle(document.querySelector('main')).display") != "none"
    assert not [url for url in requested if "pwn" in url], requested


def test_a_plot_or_card_whose_bytes_fail_their_checksum_leaves_the_rest_of_the_version_page(
    page: Page, console: ConsoleStack, console_errors: ConsoleErrors, cards: dict[str, Manifest]
) -> None:
    console_errors.expect(r"status of 500")
    broken_plot = cards["broken_plot"]
    page.goto(console.url + f"#/models/{CARDS}/versions/{broken_plot.version}")

    expect(page.get_by_test_id("plots-status")).to_have_text("1 of 2 plots loaded, 1 failed.")
    error = page.get_by_test_id("plot-error-broken.png")
    expect(error).to_contain_text("Plot broken.png could not be shown: 500: ")
    expect(error).to_contain_text("sha256")
    good = page.get_by_test_id("plot-good.png")
    assert good.evaluate("(image) => image.naturalWidth") > 0
    checksums = page.get_by_test_id("checksums-table")
    for artifact in broken_plot.artifacts:
        expect(checksums).to_contain_text(artifact.sha256)
    screenshot(page, "version-broken-plot")

    page.goto(console.url + f"#/models/{CARDS}/versions/{cards['broken_card'].version}")
    expect(page.get_by_test_id("card-error")).to_contain_text("500: ")
    expect(page.get_by_test_id("checksums-table")).to_be_visible()
    expect(page.get_by_test_id("signature-table")).to_be_visible()
