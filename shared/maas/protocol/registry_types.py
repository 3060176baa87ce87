"""Registry HTTP API wire types: request bodies (strict, no unknown fields) and the responses built on them.

Stored documents (AliasDocument, VersionMeta, Manifest) are returned as they are stored, so a client sees
exactly what the CLI and the serving path see.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from maas.registry.documents import AliasDocument, CanarySplit, VersionMeta
from maas.registry.manifest import Manifest

MAX_REASON_LENGTH = 1024


class _Wire(BaseModel):
    # Each type serves one or two registry routes: pydantic builds it when its route first runs, so a cold
    # start pays for the types of its first request only.
    model_config = ConfigDict(extra="forbid", defer_build=True)


# ---- requests


class CanaryBody(_Wire):
    version: StrictInt = Field(ge=1)
    weight: StrictFloat = Field(gt=0, lt=1, description="Share of the alias's traffic, in (0, 1).")

    def as_split(self) -> CanarySplit:
        return CanarySplit(version=self.version, weight=self.weight)


class SetAliasRequest(_Wire):
    version: StrictInt = Field(ge=1)
    expected_version: StrictInt | None = Field(
        default=None,
        ge=0,
        description="Compare-and-swap guard: null moves the alias unconditionally, 0 only creates it, "
        "n moves it only if it still points at version n.",
    )
    canary: CanaryBody | None = None
    reason: StrictStr | None = Field(default=None, max_length=MAX_REASON_LENGTH)


class RollbackRequest(_Wire):
    reason: StrictStr | None = Field(default=None, max_length=MAX_REASON_LENGTH)


class PromoteRequest(_Wire):
    version: StrictInt = Field(ge=1)
    alias: StrictStr = "production"
    force: StrictBool = Field(default=False, description="Override a metric regression; needs a reason.")
    reason: StrictStr | None = Field(default=None, max_length=MAX_REASON_LENGTH)


class TagsRequest(_Wire):
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    remove: list[StrictStr] = Field(default_factory=list)


# ---- responses


class ModelSummary(_Wire):
    name: str
    versions: list[int]
    aliases: dict[str, int]


class RegistryModelList(_Wire):
    models: list[ModelSummary]


class VersionSummary(_Wire):
    version: int
    created_at: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]


class ModelDetail(_Wire):
    name: str
    versions: list[VersionSummary]
    aliases: dict[str, AliasDocument]


class VersionDetail(_Wire):
    manifest: Manifest
    meta: VersionMeta


class AliasDeleted(_Wire):
    name: str
    alias: str
    deleted: bool = True
