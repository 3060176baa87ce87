"""The `maas` command: train and publish recipes, inspect the registry, run the local stack.

Each command imports what it needs (torch, boto3, pydantic, the local stack), so `maas --help` stays
instant and `maas models` never loads torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.config import Settings
from maas.errors import MaasError

if TYPE_CHECKING:
    from maas.registry import ModelRegistry

DRAFT_FILE = "draft.json"


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

    train = commands.add_parser("train", help="train a recipe, check its ONNX export and publish it")
    train.add_argument("recipe", metavar="RECIPE", help="a training recipe, e.g. seed-mlp")
    train.add_argument("--epochs", type=int, help="maximum number of epochs")
    train.add_argument("--seed", type=int, help="seed for the data, the weights and the shuffling")
    train.add_argument("--external-data", action="store_true", help="store weights in model.onnx.data")
    target = train.add_mutually_exclusive_group()
    target.add_argument("--publish", metavar="NAME", help="publish under NAME (default: the recipe's name)")
    target.add_argument("--no-publish", action="store_true", help="train and check only")
    train.add_argument(
        "--out", type=Path, metavar="DIR", help=f"also write the files and {DRAFT_FILE} to DIR"
    )
    train.set_defaults(command=train_command)

    models = commands.add_parser("models", help="inspect the model registry")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    list_parser = models_commands.add_parser("list", help="list published models")
    list_parser.set_defaults(command=models_list_command)
    show = models_commands.add_parser("show", help="print a version's manifest as JSON")
    show.add_argument(
        "ref", metavar="REF", help="name, name@alias, name/versions/<n> or name/versions/<alias>"
    )
    show.set_defaults(command=models_show_command)

    serve = commands.add_parser("serve", help="run the local API Gateway emulator over an embedded S3/SQS")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.set_defaults(command=serve_command)
    return parser


def train_command(args: argparse.Namespace) -> int:
    from maas.registry import validate_name
    from maas.training import ensure_parity, publish_trained, train_recipe

    if args.publish is not None:
        validate_name(args.publish)
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.external_data:
        overrides["external_data"] = True

    trained = train_recipe(args.recipe, overrides)
    draft = trained.draft
    rows = [(name, f"{value:.6g}") for name, value in draft.metrics.items()]
    if draft.parity is not None:
        rows += [
            ("parity max abs diff", f"{draft.parity.max_abs_diff:.3g}"),
            ("parity tolerance", f"{draft.parity.tolerance:.3g}"),
            ("parity samples", str(draft.parity.samples)),
            ("parity passed", "yes" if draft.parity.passed else "no"),
        ]
    print(f"trained {trained.recipe}")
    print(_table(rows))

    if args.out is not None:
        _write_out(args.out, trained.files, draft.model_dump_json(indent=2))
        print(f"wrote {', '.join(sorted(trained.files))} and {DRAFT_FILE} to {args.out}")
    if args.no_publish:
        ensure_parity(draft)
        return 0
    manifest = publish_trained(trained, _registry(), args.publish)
    print(f"published {manifest.name} version {manifest.version}")
    return 0


def models_list_command(args: argparse.Namespace) -> int:
    registry = _registry()
    rows = [("NAME", "LATEST", "VERSIONS")]
    for name in registry.list_models():
        versions = registry.versions(name)
        rows.append((name, str(versions[-1]), str(len(versions))))
    if len(rows) == 1:
        print(f"no models in s3://{registry.bucket}/{registry.prefix}")
        return 0
    print(_table(rows))
    return 0


def models_show_command(args: argparse.Namespace) -> int:
    from maas.registry import parse_ref

    ref = parse_ref(args.ref)
    registry = _registry()
    manifest = registry.manifest(ref.name, registry.resolve(ref))
    print(manifest.model_dump_json(indent=2))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from maas.local.stack import serve

    serve(host=args.host, port=args.port)
    return 0


def _registry() -> ModelRegistry:
    from maas import aws_clients, registry

    settings = Settings.from_env()
    return registry.ModelRegistry(
        aws_clients.s3_client(settings.endpoint_url),
        settings.bucket,
        prefix=settings.prefix,
        default_alias=settings.default_alias,
    )


def _write_out(directory: Path, files: dict[str, bytes], draft_json: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / DRAFT_FILE).write_text(draft_json + "\n", encoding="utf-8")


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


if __name__ == "__main__":
    sys.exit(main())
