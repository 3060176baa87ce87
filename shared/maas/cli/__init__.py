"""The `maas` command: train and publish recipes, inspect the registry, explain answers, run the local stack.

Each command imports what it needs (torch, boto3, pydantic, the local stack), so `maas --help` stays
instant and `maas models` never loads torch.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence

from maas.cli.common import default_user
from maas.cli.explain import add_explain_command
from maas.cli.jobs import add_jobs_commands
from maas.cli.models import add_models_commands, add_registry_commands
from maas.cli.serve_command import add_serve_command
from maas.cli.stack_commands import add_stack_commands
from maas.cli.target import NoStorageTarget, resolve_target, storage_failure_message
from maas.cli.training import add_training_commands
from maas.errors import MaasError

# Commands that never reach the registry's storage, or find their own (`serve` runs the store; `config`
# reports the target and so must not stop where there is none to apply).
OFFLINE_COMMANDS = frozenset({"serve", "config", "use-stack", "synthesize"})
# A shell's status for a command killed by SIGPIPE (128 + 13): what `maas ... | head` ends with.
BROKEN_PIPE_STATUS = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: 0 on success, 1 on a MaasError, 2 on a usage error (argparse, or
    no storage to use), 141 when the reader of stdout went away."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    # Each line goes out as it is printed: a reader that went away (`| head`) stops the command at that
    # line, before it writes notes about output nobody reads.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        if touches_storage(args):
            # Before the command's own work: a training run must not find out after training.
            target = resolve_target(os.environ)
            target.apply(os.environ)
            if args.verbose:
                print(target.summary(), file=sys.stderr)
        status = command(args)
        sys.stdout.flush()  # here, where a closed pipe can still be answered quietly
        return status
    except NoStorageTarget as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except MaasError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The interpreter flushes stdout once more at exit; pointed at /dev/null that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_STATUS
    except Exception as exc:
        message = storage_failure_message(exc, f"maas {args.command_name}")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


def touches_storage(args: argparse.Namespace) -> bool:
    """Whether the command reads or writes the registry's bucket (train and export unless --no-publish)."""
    return args.command_name not in OFFLINE_COMMANDS and not getattr(args, "no_publish", False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas", description="PyTorch models as ONNX, versioned in S3.")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print on stderr, before the command, the storage it uses and why (see `maas config`)",
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    add_training_commands(commands)

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print exactly one JSON document")
    author = argparse.ArgumentParser(add_help=False)
    author.add_argument("--by", default=default_user(), help="who makes the change (default: the OS user)")

    add_models_commands(commands, output, author)
    add_registry_commands(commands, output)
    add_jobs_commands(commands, output)
    add_explain_command(commands, output)

    add_serve_command(commands)
    add_stack_commands(commands, output)
    return parser


if __name__ == "__main__":
    sys.exit(main())
