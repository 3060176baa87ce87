"""The docs' examples run as a reader runs them: a local stack started the way `make serve` starts it (its
own process, a data folder, no AWS variables), then each file's marked blocks one after the other in one
bash session, from an empty folder, with the virtual environment's `bin` on PATH."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from maas.cli.serve_llm import ENV_SERVE_LLM_CACHE
from maas.local.data_folder import ENV_DATA_DIR, running_stack
from tests.support.doc_blocks import DocBlock, output_mismatch
from tests.support.paths import ROOT

DOCUMENTED_ADDRESS = "127.0.0.1:3000"
SERVE_START_SECONDS = 180.0
DESCRIPTOR_WAIT_SECONDS = 10.0
# Printed on stdout and stderr between blocks, so one session's output can be told apart block by block.
SEPARATOR = "\n@@maas-doc-block {}@@\n"
SEPARATOR_PATTERN = re.compile(r"\n@@maas-doc-block (\d+)@@\n")
PYTHON_DELIMITER = "MAAS_DOC_PYTHON_BLOCK"
VIRTUAL_ENV = Path(sys.prefix)
# `make serve`; both ports free ones, since the store's default (the API's + 1) may be taken.
SERVE = (sys.executable, "-m", "maas.cli", "serve")


def block_environment(data_dir: Path, config_home: Path) -> dict[str, str]:
    """The shell's variables less every AWS and maas setting: only the data folder says where the stack is,
    and an empty config home means no remembered deployed stack."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MAAS_", "POWERTOOLS_", "VIRTUAL_ENV"))
    }
    return {
        **kept,
        "PATH": f"{VIRTUAL_ENV / 'bin'}{os.pathsep}{kept.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "shared"),
        ENV_DATA_DIR: str(data_dir),
        "XDG_CONFIG_HOME": str(config_home),
    }


@dataclass(frozen=True, slots=True)
class LlmServing:
    """The LLM `make serve` publishes in the background: its reference, the build cache it is published from,
    and how long to wait for it (a first build on this machine takes minutes)."""

    reference: str
    cache: Path
    timeout: float


@dataclass(frozen=True, slots=True)
class ServedStack:
    url: str
    environment: Mapping[str, str]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def served_stack(folder: Path, llm: LlmServing | None = None) -> Iterator[ServedStack]:
    """`maas serve` on a free port over a data folder in `folder`, until the block ends: without the LLM, or,
    with `llm`, once it has published the LLM from the build cache `llm` names (building it there first if
    it is not)."""
    port = _free_port()
    environment = block_environment(folder / "data", folder / "config")
    command = [*SERVE, "--port", str(port), "--store-port", str(_free_port())]
    if llm is None:
        command.append("--no-llm")
    else:
        environment[ENV_SERVE_LLM_CACHE] = str(llm.cache)
    log = folder / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = ServedStack(f"http://127.0.0.1:{port}", environment, log)
    try:
        _wait_until_ready(process, stack, "/v2/health/ready", SERVE_START_SECONDS)
        if llm is not None:
            # What the banner says when the background publishing fails (maas.local.stack_banner.llm_banner).
            failed = f"LLM: publishing {llm.reference.partition('@')[0]} failed"
            _wait_until_ready(process, stack, f"/openai/v1/models/{llm.reference}", llm.timeout, failed)
        yield stack
    finally:
        _stop(process)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(
    process: subprocess.Popen[bytes], stack: ServedStack, path: str, timeout: float, gives_up: str = ""
) -> None:
    """Until GET `path` answers 200; an AssertionError when the stack exits, says `gives_up` in its log, or
    takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not _ready(f"{stack.url}{path}"):
        if process.poll() is not None:
            raise AssertionError(f"maas serve exited with {process.returncode}:\n{stack.log_tail()}")
        if gives_up and gives_up in stack.log.read_text(errors="replace"):
            raise AssertionError(f"GET {path}: never ready:\n{stack.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {path}: not 200 in {timeout:.0f} s:\n{stack.log_tail()}")
        time.sleep(0.25)
    # The CLI finds the stack by its descriptor; a stack that leaves none shows up as the blocks' failures.
    data_dir = Path(stack.environment[ENV_DATA_DIR])
    settle = time.monotonic() + DESCRIPTOR_WAIT_SECONDS
    while running_stack(data_dir) is None and time.monotonic() < settle:
        time.sleep(0.1)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass(frozen=True, slots=True)
class BlockFailure:
    block: DocBlock
    why: str

    def __str__(self) -> str:
        return f"{self.block.where} ({self.block.language}):\n{self.block.code}\n{self.why}"


def run_blocks(blocks: Sequence[DocBlock], stack: ServedStack, timeout: float) -> list[BlockFailure]:
    """Run the blocks in order in one bash session (variables and the working folder carry over, as in a
    reader's terminal) and check each one's output; the failures (a failing block ends the session)."""
    blocks = [_rewritten(block, stack.url) for block in blocks]
    with tempfile.TemporaryDirectory(prefix="maas-docs-") as work:
        # A checkout's `.venv`, so that the README's `source .venv/bin/activate` works as in the checkout.
        (Path(work) / ".venv").symlink_to(VIRTUAL_ENV)
        script = session_script(blocks)
        session = subprocess.Popen(
            ["bash", "-c", script],
            cwd=work,
            env=dict(stack.environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        status: int | None
        try:
            stdout, stderr = session.communicate(timeout=timeout)
            status = session.returncode
        except subprocess.TimeoutExpired:
            # The whole group: a hung command's children would otherwise hold the pipes open.
            os.killpg(session.pid, signal.SIGKILL)
            stdout, stderr = session.communicate()
            status = None
    return _judge(blocks, stack, stdout, stderr, status, timeout)


def session_script(blocks: Sequence[DocBlock]) -> str:
    lines = ["set -euo pipefail"]
    for number, block in enumerate(blocks):
        marker = shlex.quote(SEPARATOR.format(number))
        lines.append(f"printf %s {marker}; printf %s {marker} >&2")
        if block.language == "python":
            lines += [f"python - <<'{PYTHON_DELIMITER}'", block.code.rstrip("\n"), PYTHON_DELIMITER]
        else:
            lines.append(block.code.rstrip("\n"))
    lines.append(f"printf %s {shlex.quote(SEPARATOR.format(len(blocks)))}")
    return "\n".join(lines) + "\n"


def _rewritten(block: DocBlock, url: str) -> DocBlock:
    """The block with the documented address (`make serve`'s default port) replaced by the stack's."""
    address = url.removeprefix("http://")
    code = block.code.replace(DOCUMENTED_ADDRESS, address).replace("localhost:3000", address)
    expected = block.expected
    if expected is not None:
        expected = type(expected)(
            expected.language, expected.text.replace(DOCUMENTED_ADDRESS, address), expected.line
        )
    return DocBlock(block.path, block.line, block.language, code, block.tag, expected)


def _judge(
    blocks: Sequence[DocBlock],
    stack: ServedStack,
    stdout: str,
    stderr: str,
    status: int | None,
    timeout: float,
) -> list[BlockFailure]:
    printed, finished = _per_block(stdout)
    errors, _ = _per_block(stderr)
    failures = []
    for number, block in enumerate(blocks):
        if number >= finished:
            how = f"timed out after {timeout:.0f} s" if status is None else f"exit status {status}"
            why = f"{how}\nstdout:\n{printed.get(number, '')}\nstderr:\n{errors.get(number, '')}\n"
            failures.append(BlockFailure(block, f"{why}serve's log, last lines:\n{stack.log_tail(15)}"))
            break
        if block.expected is not None:
            mismatch = output_mismatch(block.expected, printed[number])
            if mismatch is not None:
                failures.append(BlockFailure(block, f"{mismatch}\nstderr:\n{errors.get(number, '')}"))
    return failures


def _per_block(output: str) -> tuple[dict[int, str], int]:
    """What each block that started printed, by block number, and how many blocks finished (a block has
    finished when the separator of the next one follows it)."""
    pieces = SEPARATOR_PATTERN.split(output)
    # [before the first block, number, its output, number, its output, ...]
    printed = {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}
    finished = max(printed) if printed else 0
    return printed, finished
