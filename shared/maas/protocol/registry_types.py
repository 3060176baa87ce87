"""Registry HTTP API wire types: request bodies (strict, no unknown fields) and the responses built on them.

Stored documents (AliasDocument, VersionMeta, Manifest) are returned as they are stored, so a client sees
exactly what the CLI and the serving path see.
"""

from __future__ import annotations

from typing import Any, Literal

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
    expected_version: StrictInt | None = Field(
        default=None,
        ge=0,
        description="The alias as the caller judged the gate: null promotes against whatever it points at "
        "now, 0 only while it is unset, n only while it points at version n (else 409).",
    )


class TagsRequest(_Wire):
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    remove: list[StrictStr] = Field(default_factory=list)


# ---- responses


Goal = Literal["minimize", "maximize"]


class LatestVersion(_Wire):
    """The version the model's `latest` pointer names (the newest one not archived), in brief."""

    version: int
    created_at: str
    status: str
    task: str | None
    primary_metric: str | None
    primary_metric_goal: Goal | None
    primary_value: float | None = Field(description="The primary metric's value; null without one.")


class ModelSummary(_Wire):
    name: str
    versions: list[int]
    aliases: dict[str, int]
    canaries: dict[str, CanarySplit] = Field(
        default_factory=dict, description="The aliases that split traffic with a canary, and their split."
    )
    latest: LatestVersion | None = Field(description="Null when every version is archived.")


class RegistryModelList(_Wire):
    models: list[ModelSummary]


class VersionSummary(_Wire):
    version: int
    created_at: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]
    task: str | None
    primary_metric: str | None
    primary_metric_goal: Goal | None


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


class Difference(_Wire):
    section: str
    key: str
    a: Any
    b: Any


class ModelDiff(_Wire):
    """What `maas models diff NAME A B --json` prints."""

    name: str
    a: int
    b: int
    differences: list[Difference]


class GateVerdict(_Wire):
    """The promotion gate's verdict on moving `alias` to `version`, judged without moving anything; a
    promotion decides through the same gate."""

    name: str
    version: int
    alias: str
    current_version: int | None
    verdict: Literal["allowed", "needs_force", "refused"] = Field(
        description="refused: no promotion can pass (parity failed, archived); needs_force: the primary "
        "metric regresses, so only a forced promotion with a reason passes; allowed: a plain one passes."
    )
    message: str | None = Field(description="What a promotion would be refused with; null when allowed.")
    metric: str | None
    goal: Goal | None
    current_value: float | None
    candidate_value: float | None
