"""The local stack's two ports: the gateway's (3000 unless told) and the store's, which stays the same across
restarts so that a shell holding the banner's AWS_ENDPOINT_URL keeps working after `make serve` restarts.

The store's port: the one asked for (`--store-port`), else the one remembered in the data folder, else the
gateway's port + 1 (when the gateway's is not 0), else any free port; it is remembered once the store listens.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from maas.errors import MaasError

STORE_PORT_FILE = "store-port.json"


class PortInUse(MaasError, status=500):
    """A port the stack must listen on is taken: says which, and what to run instead."""


class DataFolderInUse(MaasError, status=500):
    """Another running stack keeps its store in the same data folder."""


def gateway_port_in_use(host: str, port: int) -> PortInUse:
    return PortInUse(
        f"{host}:{port} is already in use (another `make serve`?): stop it, or pick another port with "
        f"`make serve PORT={port + 1}` (`maas serve --port {port + 1}`)"
    )


def store_port_in_use(host: str, port: int) -> PortInUse:
    return PortInUse(
        f"the local store's port {host}:{port} is already in use (another `make serve`?): stop it, or pick "
        f"another with `maas serve --store-port PORT` (the new one is remembered in the data folder)"
    )


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now (as werkzeug binds: reusing a port in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def choose_store_port(
    data_dir: Path | None, requested: int | None, gateway_port: int, host: str = "127.0.0.1"
) -> int:
    """Which port the store listens on (0: any free one)."""
    if requested is not None:
        return requested
    remembered = remembered_store_port(data_dir) if data_dir is not None else None
    # The gateway moved onto the store's old port (`make serve PORT=3001` after a first run on 3000): the
    # gateway has it now, and the store takes the next one.
    if remembered is not None and remembered != gateway_port:
        return remembered
    # The next port is only a convenience: when something else holds it, any free port does.
    if gateway_port and port_is_free(host, gateway_port + 1):
        return gateway_port + 1
    return 0


def remembered_store_port(data_dir: Path) -> int | None:
    try:
        port = json.loads((data_dir / STORE_PORT_FILE).read_text()).get("port")
    except (OSError, ValueError, AttributeError):
        return None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def remember_store_port(data_dir: Path, port: int) -> None:
    from maas.local.store_state import write_atomically

    data_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(data_dir / STORE_PORT_FILE, (json.dumps({"port": port}) + "\n").encode())
