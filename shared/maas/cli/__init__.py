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

    serve = commands.add_parser("serve", help="run the local API Gateway emulator over an embedded S3/SQS")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument(
        "--parameter-overrides",
        metavar="NAME=VALUE ...",
        help="template parameters, as `sam deploy` takes them (default: $MAAS_LOCAL_PARAMETERS), "
        "e.g. 'DataPlaneAuth=AWS_IAM'",
    )
    serve.add_argument(
        "--no-llm",
        dest="llm",
        action="store_false",
        default=None,
        help="do not publish the LLM (smollm2-135m) in the background (default: $MAAS_SERVE_LLM, else do)",
    )
    serve.set_defaults(command=serve_command)
    return parser


def serve_command(args: argparse.Namespace) -> int:
    from maas.cli.serve import serve
    from maas.local.stack import parse_parameter_overrides

    overrides = args.parameter_overrides
    serve(
        host=args.host,
        port=args.port,
        parameters=None if overrides is None else parse_parameter_overrides(overrides),
        llm=args.llm,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
