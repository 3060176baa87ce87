"""The version manifest: what a version is, how it was made and how good it is.

It is written last, so its presence is the commit point of a version.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from maas.datatypes import V2_NAMES

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
HASH_CHUNK_BYTES = 1 << 20


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One input or output: V2 datatype and shape, with -1 for a dynamic dimension."""

    name: str
    datatype: str
    shape: list[int]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in V2_NAMES:
            raise ValueError(f"expected one of {list(V2_NAMES)}, got {value!r}")
        return value


class Signature(_Frozen):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Artifact(_Frozen):
    path: str
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
    model_file: str = MODEL_FILE
    signature: Signature
    artifacts: list[Artifact]
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    parity: Parity | None = None
    labels: list[str] | None = None

    def artifact(self, path: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.path == path:
                return artifact
        raise KeyError(path)

    @property
    def total_bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)


class ManifestDraft(_Frozen):
    """Everything the publisher knows before the registry assigns a version and checksums."""

    task: str | None = None
    description: str = ""
    model_file: str = MODEL_FILE
    signature: Signature
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    parity: Parity | None = None
    labels: list[str] | None = None

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
