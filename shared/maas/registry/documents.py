"""The registry's mutable documents: alias pointers (with their history and canary split) and per-version
metadata (status and tags). Both are moved by compare-and-swap; version folders themselves never change,
except that deleting a version leaves its claim behind."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Enough to roll back through any realistic run of moves while keeping the pointer object small.
ALIAS_HISTORY_LIMIT = 100


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CanarySplit(_Document):
    """Send `weight` of the alias's traffic to `version`, the rest to the alias's own version."""

    version: int = Field(ge=1)
    weight: float = Field(gt=0.0, lt=1.0)


class AliasMove(_Document):
    at: str
    from_version: int | None
    to_version: int
    canary: CanarySplit | None = None
    reason: str | None = None
    by: str | None = None


class AliasDocument(_Document):
    version: int = Field(ge=1)
    canary: CanarySplit | None = None
    updated_at: str
    updated_by: str | None = None
    reason: str | None = None
    history: list[AliasMove] = Field(default_factory=list)

    def points_at(self, version: int) -> bool:
        return self.version == version or (self.canary is not None and self.canary.version == version)


class VersionClaim(_Document):
    """`versions/<n>/claim.json`: written create-only before anything else of a version, and never deleted,
    so the number n is never given again (not even after the version is deleted)."""

    claimed_at: str


class VersionMeta(_Document):
    status: Literal["ready", "archived"] = "ready"
    tags: dict[str, str] = Field(default_factory=dict)
    updated_at: str | None = None
    updated_by: str | None = None
