"""The version manifest: what a version is, how it was made and how good it is.

It is written last, so its presence is the commit point of a version.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from maas.signature import Signature

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
HASH_CHUNK_BYTES = 1 << 20
# Relative, no "..", no leading "/" or ".": artifacts are written beside each other on load, so a
# manifest must never be able to name a file outside its version folder.
SAFE_RELATIVE_PATH = (
    r"^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*)*$"
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Artifact(_Frozen):
    path: str = Field(pattern=SAFE_RELATIVE_PATH)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Parity(_Frozen):
    """Torch against onnxruntime on held-out data, measured before publishing."""

    max_abs_diff: float
    tolerance: float
    samples: int
    passed: bool


class Lineage(_Frozen):
    recipe: str | None = None
    dataset_hash: str | None = None
    code_version: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    seed: int | None = None


class Manifest(_Frozen):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str
    version: int
    created_at: str
    status: Literal["ready", "archived"] = "ready"
    task: str | None = None
    description: str = ""
    model_file: str = Field(default=MODEL_FILE, pattern=SAFE_RELATIVE_PATH)
    # Files the graph references as ONNX external data; they must sit beside model_file at load time.
    model_data_files: list[str] = Field(default_factory=list)
    signature: Signature
    artifacts: list[Artifact]
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    parity: Parity | None = None
    labels: list[str] | None = None
    # What a promotion compares: e.g. "mse" with "minimize". None disables the regression gate.
    primary_metric: str | None = None
    primary_metric_goal: Literal["minimize", "maximize"] = "minimize"

    @model_validator(mode="after")
    def _graph_files_are_artifacts(self) -> Manifest:
        paths = {a.path for a in self.artifacts}
        missing = [path for path in self.graph_files if path not in paths]
        if missing:
            raise ValueError(f"graph files {missing} are not listed among the artifacts")
        return self

    def artifact(self, path: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.path == path:
                return artifact
        raise KeyError(path)

    @property
    def total_bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)

    @property
    def graph_files(self) -> list[str]:
        return [self.model_file, *self.model_data_files]


class ManifestDraft(_Frozen):
    """Everything the publisher knows before the registry assigns a version and checksums."""

    task: str | None = None
    description: str = ""
    model_file: str = MODEL_FILE
    model_data_files: list[str] = Field(default_factory=list)
    signature: Signature
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    parity: Parity | None = None
    labels: list[str] | None = None
    # What a promotion compares: e.g. "mse" with "minimize". None disables the regression gate.
    primary_metric: str | None = None
    primary_metric_goal: Literal["minimize", "maximize"] = "minimize"

    def commit(self, name: str, version: int, artifacts: list[Artifact]) -> Manifest:
        return Manifest(
            name=name,
            version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            artifacts=artifacts,
            **self.model_dump(),
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe_artifact(path: str, data: bytes) -> Artifact:
    return Artifact(path=path, sha256=sha256_hex(data), bytes=len(data))
