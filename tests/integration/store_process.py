"""A kept local store, or a whole local stack, on a data folder in a process of its own: for tests that kill
it (SIGKILL, as a crash would) or run it under a lowered open-files limit.

    python -m tests.integration.store_process DATA_DIR [--stack] [--open-files N]

It prints `READY <endpoint> <bucket>` once serving, and stops cleanly when its stdin closes.
`StoreProcess` starts one from a test."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

from tests.support.aws import AWS_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
READY = "READY"
STORE_BUCKET = "kept"


def clean_environment() -> dict[str, str]:
    """This process's environment without the shell's AWS and MAAS_* settings, with the checkout's code."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in AWS_VARIABLES and not name.startswith("MAAS_")
    }
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT)])
    return environ


def run_maas(
    *args: str, data_dir: Path, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`maas ARGS` as a user runs it, with no AWS settings and `data_dir` as the data folder."""
    return subprocess.run(
        [sys.executable, "-m", "maas.cli", *args],
        cwd=ROOT,
        env={**clean_environment(), **(environ or {}), "MAAS_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class StoreProcess:
    """`python -m tests.integration.store_process` started and waited for; `s3` is a client of its store."""

    def __init__(self, data_dir: Path, *, stack: bool = False, open_files: int | None = None) -> None:
        environ = clean_environment()
        command = [sys.executable, "-m", "tests.integration.store_process", str(data_dir)]
        command += ["--stack"] if stack else []
        command += ["--open-files", str(open_files)] if open_files else []
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(READY):
                _, self.endpoint, self.bucket = line.split()
                break
        else:
            raise AssertionError(f"the store process exited with {self.process.wait()} before serving")
        self.s3: Any = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> int:
        """Stop it as Ctrl-C would (its state saved a last time); returns its exit status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL: nothing is saved that was not saved already."""
        self.process.kill()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--stack", action="store_true", help="the whole LocalStack, functions and pollers")
    parser.add_argument("--open-files", type=int, help="the soft RLIMIT_NOFILE to run under")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    if args.open_files:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.open_files, hard))
    if args.stack:
        from maas.local.stack import LocalStack

        with LocalStack(port=0, embedded=True, queue_visibility_seconds=1, data_dir=args.data_dir) as stack:
            print(READY, stack.store.endpoint_url, stack.store.bucket, flush=True)
            sys.stdin.read()
        return
    from maas.local.object_store import EmbeddedStore, ensure_bucket
    from maas.local.process_environment import EnvironmentPatch

    environment = EnvironmentPatch()
    store = EmbeddedStore(environment, data_dir=args.data_dir)
    endpoint = store.start()
    try:
        ensure_bucket(boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"), STORE_BUCKET)
        print(READY, endpoint, STORE_BUCKET, flush=True)
        sys.stdin.read()
    finally:
        store.stop()
        environment.restore()


if __name__ == "__main__":
    main()


def serve_seeded_folder(
    data_dir: Path, seed_model: Any, extra_environment: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    """`maas serve --no-llm` in a process of its own on `data_dir`, with the seed model already published
    there (so it trains nothing); returns the process and its stdout up to the end of the banner (the
    `LLM:` line), when every thread of the stack runs. The caller stops the process."""
    from maas.local.stack import LocalStack
    from maas.training import publish_trained

    with LocalStack(port=0, embedded=True, data_dir=data_dir) as stack:
        publish_trained(seed_model, stack.registry)
    environ = {**clean_environment(), **(extra_environment or {}), "MAAS_DATA_DIR": str(data_dir)}
    serving = subprocess.Popen(
        [sys.executable, "-m", "maas.cli", "serve", "--no-llm", "--port", "0"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    assert serving.stdout is not None
    for line in serving.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("LLM:"):
            break
    return serving, lines
