"""The docs site builds cleanly, its generated pages cover what they are generated from, and the README stays
a front door: short, opening with the two commands, every link pointing at a file that exists."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maas import config
from maas.api.route_table import ROUTES
from tests.support.paths import ROOT

README = ROOT / "README.md"
BENCH_RESULTS = ROOT / "bench-results" / "results.md"
README_MAX_LINES = 150
OPENING_COMMANDS = ["make serve", "make test"]
# A Markdown link's target, up to its closing parenthesis (none of ours contain one).
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `mkdocs build --strict` makes it: any warning (a broken link, a page missing from the
    docs folder, a generated page that cannot be filled) fails the build."""
    site_dir = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, f"expected a clean strict build, got:\n{built.stdout}{built.stderr}"
    return site_dir


def test_the_site_builds_with_strict_checks(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "architecture" / "decisions" / "index.html").is_file()


def test_the_configuration_page_lists_every_variable_config_names(site: Path) -> None:
    page = (site / "configuration" / "index.html").read_text()
    variables = [v for k, v in vars(config).items() if k.startswith("ENV_") and isinstance(v, str)]
    assert any(name.startswith("MAAS_") for name in variables)

    missing = [name for name in variables if f"<code>{name}</code>" not in page]

    assert missing == [], f"expected every variable of maas.config on the page, missing {missing}"


def test_the_performance_page_shows_every_recorded_measurement(site: Path) -> None:
    page = html.unescape((site / "performance" / "index.html").read_text())
    rows = [line for line in BENCH_RESULTS.read_text().splitlines() if line.startswith("| ")]
    measurements = {line.split(" | ")[1] for line in rows if not line.startswith("| case |")}
    assert measurements

    missing = sorted(m for m in measurements if m not in page)

    assert missing == [], f"expected every measurement of {BENCH_RESULTS.name} on the page, missing {missing}"


@pytest.mark.parametrize(("function", "page"), [("infer", "api"), ("registry", "registry")])
def test_the_api_pages_list_exactly_the_route_tables_routes(site: Path, function: str, page: str) -> None:
    text = html.unescape((site / page / "index.html").read_text())
    listed = set(re.findall(r"<code>((?:GET/HEAD|POST|PUT|DELETE) /[^<]*)</code>", text))

    declared = {
        f"{'/'.join(method.value for method in route.methods)} {route.path}"
        for route in ROUTES
        if route.function == function
    }

    assert declared
    assert listed == declared


def test_the_readme_is_short_and_opens_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    first_block = lines[lines.index("```bash") + 1 : lines.index("```")]

    assert len(lines) <= README_MAX_LINES
    assert [line.split("#")[0].strip() for line in first_block] == OPENING_COMMANDS
    assert lines.index("```bash") <= 3, "expected the two commands right under the title"


@pytest.mark.parametrize("markdown", [README, ROOT / "infra" / "README.md"], ids=["README", "infra/README"])
def test_every_relative_link_points_at_a_file(markdown: Path) -> None:
    targets = [t for t in LINK_TARGET.findall(markdown.read_text()) if not re.match(r"[a-z]+:", t)]
    assert targets

    broken = [t for t in targets if not (markdown.parent / t.split("#")[0]).exists()]

    assert broken == []
