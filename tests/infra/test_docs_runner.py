"""The runner of the docs' examples judges as it should, shown without a stack: a block that fails or prints
something else is reported with its place and output, the blocks after a failure do not run, and a session
carries variables, files and the working folder from block to block as a reader's terminal does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.doc_blocks import marked_blocks
from tests.support.doc_runner import ServedStack, run_blocks

TIMEOUT_SECONDS = 60.0


def stack_at(tmp_path: Path) -> ServedStack:
    """No stack answers at this address; the blocks here never call one."""
    log = tmp_path / "serve.log"
    log.write_text("serve's last line\n")
    return ServedStack("http://127.0.0.1:9", dict(os.environ), log)


def page(tmp_path: Path, *blocks: tuple[str, str, str | None]) -> Path:
    """A page of run blocks, (language, code, expected output or None) each."""
    parts = ["# page\n"]
    for language, code, expected in blocks:
        parts.append(f"<!-- maas:run -->\n```{language}\n{code}\n```\n")
        if expected is not None:
            parts.append(f"<!-- maas:output -->\n```text\n{expected}\n```\n")
    path = tmp_path / "page.md"
    path.write_text("\n".join(parts))
    return path


def test_variables_files_and_the_folder_carry_over_and_the_address_is_the_stacks(tmp_path: Path) -> None:
    path = page(
        tmp_path,
        ("bash", "greeting=hello\necho data > kept.txt\nmkdir sub && cd sub", None),
        ("bash", "echo $greeting $(cat ../kept.txt) $(basename $PWD)", "hello data sub"),
        ("python", "print('http://127.0.0.1:3000/v2')", "http://127.0.0.1:9/v2"),
        ("bash", "test -x .venv/bin/python || test -x ../.venv/bin/python; echo ok", "ok"),
    )

    assert run_blocks(marked_blocks(path), stack_at(tmp_path), TIMEOUT_SECONDS) == []


def test_a_block_that_prints_something_else_is_reported_with_both(tmp_path: Path) -> None:
    path = page(tmp_path, ("bash", "echo goodbye", "hello"), ("bash", "echo next", "next"))

    (failure,) = run_blocks(marked_blocks(path), stack_at(tmp_path), TIMEOUT_SECONDS)

    assert failure.block.where == "page.md:4"
    assert "expected (`...` elides):\nhello\ngot:\ngoodbye" in str(failure)


@pytest.mark.parametrize("code", ["false", "undefined_command_here", "echo ${unset_variable}", "false | cat"])
def test_a_failing_block_ends_the_session_naming_its_status_and_stderr(tmp_path: Path, code: str) -> None:
    blocks = [("bash", "echo before", "before"), ("bash", code, None), ("bash", "echo after", "x")]
    path = page(tmp_path, *blocks)

    (failure,) = run_blocks(marked_blocks(path), stack_at(tmp_path), TIMEOUT_SECONDS)

    assert failure.block.code == f"{code}\n"
    assert "exit status" in failure.why
    assert "serve's last line" in failure.why


def test_a_block_that_hangs_is_reported_as_timed_out(tmp_path: Path) -> None:
    path = page(tmp_path, ("bash", "echo started; sleep 30", None))

    (failure,) = run_blocks(marked_blocks(path), stack_at(tmp_path), 1.0)

    assert "timed out after 1 s" in failure.why
    assert "started" in failure.why
