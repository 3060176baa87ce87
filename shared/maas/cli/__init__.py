"""The `maas` command: train and publish recipes, inspect the registry, explain answers, run the local stack.

Each command imports what it needs (torch, boto3, pydantic, the local stack), so `maas --help` stays
instant and `maas models` never loads torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from maas.cli.common import default_user
from maas.cli.explain import add_explain_command
from maas.cli.jobs import add_jobs_commands
from maas.cli.models import add_models_commands, add_registry_commands
from maas.cli.serve_command import add_serve_command
from maas.cli.training import add_training_commands
from maas.errors import MaasError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: 0 on success, 1 on a MaasError, 2 on a usage error (argparse)."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except MaasError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas", description="PyTorch models as ONNX, versioned in S3.")
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
    return parser


if __name__ == "__main__":
    sys.exit(main())
