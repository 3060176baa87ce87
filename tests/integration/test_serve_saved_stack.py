"""After `maas use-stack NAME`, `maas` commands go to that deployed stack: `make serve` says so under its
banner (which tells another shell's `maas` that it finds this stack), with the command that undoes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from maas.cli.serve import saved_stack_notice
from maas.cli.target import SavedStack, save_stack, saved_stack_path
from maas.training import TrainedModel
from tests.integration.store_process import serve_seeded_folder

DEPLOYED = SavedStack(
    stack="maas-prod", region="eu-west-1", bucket="maas-deployed", api_url="https://api.example"
)


def test_no_notice_without_a_remembered_deployed_stack(tmp_path: Path) -> None:
    assert saved_stack_notice({"XDG_CONFIG_HOME": str(tmp_path)}) is None


def test_a_damaged_remembered_stack_is_named_too(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    saved_stack_path(environ).parent.mkdir(parents=True)
    saved_stack_path(environ).write_text("not json")

    notice = saved_stack_notice(environ)

    assert notice is not None and str(saved_stack_path(environ)) in notice and "\n" not in notice


def test_serve_says_under_its_banner_that_maas_commands_go_to_the_deployed_stack(
    isolated_env: pytest.MonkeyPatch, seed_model: TrainedModel, tmp_path: Path
) -> None:
    config = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    save_stack(config, DEPLOYED)
    serving, lines = serve_seeded_folder(tmp_path / "data", seed_model, config)
    # Only the banner is under test here; a clean stop is test_serve_signals' business.
    serving.kill()
    serving.wait(timeout=60)

    assert any(line.startswith("LLM:") for line in lines), lines
    banner_line = next(i for i, line in enumerate(lines) if "finds this stack" in line)
    notices = [line for line in lines if line.startswith("note:")]
    assert len(notices) == 1, lines
    notice = notices[0]
    assert lines.index(notice) > banner_line
    assert "deployed stack maas-prod" in notice and "`maas use-stack --local`" in notice
