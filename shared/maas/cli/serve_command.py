"""`maas serve`'s arguments (light: `maas --help` imports this, never the local stack)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maas.cli.common import Commands

SERVE_DESCRIPTION = """\
Run template.yaml's API and functions on 127.0.0.1 over an embedded S3/SQS store, until Ctrl-C.

The store (models, aliases and their history, jobs, queues) is kept in the data folder: --data-dir, else
$MAAS_DATA_DIR, else .maas/ in the checkout (ignored by git). Each start adds to what is there: the example
model seed-mlp is trained only when missing, and seed-mlp@production is set only when missing. The store
listens on the same port every time (--store-port, else the one remembered in the data folder, else
--port + 1), so AWS_ENDPOINT_URL from an earlier banner stays right. While it serves, the data folder holds
stack.json, by which every `maas` command finds it.

Start afresh with `maas serve --reset` (make reset): it deletes the saved store and exits; it refuses while
a stack serves from the folder. A busy port: `maas serve --port 3001` (make serve PORT=3001).
"""


def add_serve_command(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the local stack (API Gateway emulator, functions, S3/SQS kept in .maas/)",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000, help="the API's port (default: 3000)")
    serve.add_argument(
        "--store-port",
        type=int,
        default=None,
        help="the store's port, remembered for later starts (default: the remembered one, else --port + 1)",
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the store is kept (default: $MAAS_DATA_DIR, else .maas/ in the checkout)",
    )
    serve.add_argument(
        "--reset",
        action="store_true",
        help="delete the saved store in the data folder and exit (refused while a stack serves from it)",
    )
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
    if args.reset:
        return reset_command(args.data_dir)
    from maas.cli.serve import serve
    from maas.local.stack import parse_parameter_overrides

    overrides = args.parameter_overrides
    serve(
        host=args.host,
        port=args.port,
        parameters=None if overrides is None else parse_parameter_overrides(overrides),
        llm=args.llm,
        data_dir=args.data_dir,
        store_port=args.store_port,
    )
    return 0


def reset_command(data_dir: Path | None) -> int:
    """`maas serve --reset`: forget the saved store, unless a stack is serving from it."""
    import os

    from maas.local.data_folder import LOCK_WAIT_SECONDS, DataFolderLock, data_folder, running_stack
    from maas.local.stack import find_project_root
    from maas.local.store_state import reset_store, store_folder

    folder = data_dir.expanduser().resolve() if data_dir else data_folder(os.environ, find_project_root())
    if not store_folder(folder).exists():
        print(f"no saved local store in {store_folder(folder)}: nothing to reset")
        return 0
    # The stack's own lock, held while deleting: a stack that starts meanwhile waits for it or is refused.
    lock = DataFolderLock(folder)
    if not lock.acquire(wait_seconds=LOCK_WAIT_SECONDS):
        running = running_stack(folder)
        holder = f"pid {running.pid}, {running.url}" if running is not None else "still starting"
        print(
            f"error: a local stack serves from {folder} ({holder}): stop it first "
            "(Ctrl-C where `make serve` runs), then reset",
            file=sys.stderr,
        )
        return 1
    try:
        deleted = reset_store(folder)
    finally:
        lock.release()
    if deleted:
        print(f"deleted the saved local store in {store_folder(folder)}; `make serve` starts afresh")
    else:
        print(f"no saved local store in {store_folder(folder)}: nothing to reset")
    return 0
