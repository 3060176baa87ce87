"""`maas serve`'s arguments (light: `maas --help` imports this, never the local stack)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maas.cli.common import Commands


def add_serve_command(commands: Commands) -> None:
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
