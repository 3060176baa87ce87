"""Throwaway SAM projects for the local stack's tests: a template and its functions' code written into a
folder, the echo project whose function records every invocation, and local gateways started over a
template and stopped when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas.local.cloudformation import IntrinsicResolver
from maas.local.gateway import LocalGateway
from maas.local.sam import SamTemplate, TemplateRoute
from maas.local.template_reader import load_template

TEMPLATE_FILE = "template.yaml"
GatewayFactory = Callable[..., LocalGateway]


def write_project(root: Path, files: Mapping[str, str]) -> Path:
    """Write each file's text at its path under `root`, making folders as needed; returns `root`."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@dataclass(frozen=True)
class EchoProject:
    """A project whose one function lives in echo/ and appends each event's routeKey to the file named by
    the template's RecordFile parameter: a request refused at the gateway leaves no line there."""

    root: Path
    record: Path

    @classmethod
    def write(cls, folder: Path, template: str, echo_app: str) -> EchoProject:
        write_project(folder, {TEMPLATE_FILE: template, "echo/app.py": echo_app})
        return cls(folder, folder / "invocations.txt")

    def template(self, **parameters: str) -> SamTemplate:
        """The template read with RecordFile pointing at the record, and `parameters` over its defaults."""
        return load_template(self.root / TEMPLATE_FILE, {"RecordFile": str(self.record), **parameters})

    def invocations(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []


@contextmanager
def gateway_starter(root: Path) -> Iterator[GatewayFactory]:
    """A function that starts a gateway on a free port over a template's routes (or the `routes` given)
    with the project at `root`; every gateway it started is stopped when the block ends."""
    started: list[LocalGateway] = []

    def start(
        template: SamTemplate, *, routes: Sequence[TemplateRoute] | None = None, **options: Any
    ) -> LocalGateway:
        gateway = LocalGateway(
            template.routes if routes is None else routes,
            root=root,
            port=0,
            resolver=IntrinsicResolver.for_template(template),
            **options,
        )
        gateway.start()
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()
