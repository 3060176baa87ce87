"""The registry's own errors (beside maas.errors, whose statuses they reuse)."""

from __future__ import annotations

from maas.errors import MaasError


class VersionConflict(MaasError, status=409):
    """A create-only or compare-and-swap write lost a race. HTTP 409."""
