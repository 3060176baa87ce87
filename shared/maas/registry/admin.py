"""The registry's write side beyond publishing: aliases, promotion, rollback, tags, archive, delete, diff, gc.

Serving never imports this module. Every mutable document is moved by compare-and-swap: a lost race is
retried against the fresh document, or reported as a 409 when the caller's expectation no longer holds, so
no update is silently lost and every alias move lands in the alias's history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from maas.errors import InvalidInput, MaasError, NotFound
from maas.registry.documents import (
    ALIAS_HISTORY_LIMIT,
    AliasDocument,
    AliasMove,
    CanarySplit,
    VersionMeta,
    utc_now,
)
from maas.registry.latest_moves import repair_latest, settle_latest
from maas.registry.manifest import MANIFEST_FILE, Manifest
from maas.registry.references import ALIAS_PATTERN, LATEST, validate_name
from maas.registry.store import CLAIM_FILE, ModelRegistry, Stored, VersionConflict

D = TypeVar("D", bound=BaseModel)
# How often a write that lost a race is retried against the fresh document before giving up.
MAX_CAS_ATTEMPTS = 32
NO_ALIAS = 0
MAX_TAGS = 50
MAX_TAG_LENGTH = 256


class PromotionRefused(MaasError, status=409):
    """The candidate regresses the primary metric or failed its parity check. HTTP 409."""


class VersionInUse(MaasError, status=409):
    """An alias still points at the version. HTTP 409."""


Verdict = Literal["allowed", "needs_force", "refused"]
ALLOWED: Verdict = "allowed"
NEEDS_FORCE: Verdict = "needs_force"
REFUSED: Verdict = "refused"


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """What the promotion gate says of moving `alias` to `version`, decided without moving anything.

    refused: no promotion can pass (parity failed, archived); needs_force: the primary metric regresses, so
    only a forced promotion with a reason passes; allowed: a plain promotion passes. `message` is the
    refusal a promotion would raise (None when allowed)."""

    name: str
    version: int
    alias: str
    current_version: int | None
    verdict: Verdict
    message: str | None
    metric: str | None
    goal: Literal["minimize", "maximize"] | None
    current_value: float | None
    candidate_value: float | None


@dataclass(frozen=True, slots=True)
class Difference:
    section: str
    key: str
    a: Any
    b: Any


class RegistryAdmin:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    # ---- aliases

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected_version: int | None = None,
        canary: CanarySplit | None = None,
        reason: str | None = None,
        by: str | None = None,
    ) -> AliasDocument:
        """Point `alias` at `version` (and optionally split traffic with a canary).

        `expected_version`: None moves the alias whatever it points at now; NO_ALIAS (0) only creates it;
        a version number moves it only if it still points there, else VersionConflict (409)."""
        return self._move_alias(
            name, alias, lambda _: (version, canary), expected_version=expected_version, reason=reason, by=by
        )

    def rollback(
        self, name: str, alias: str, *, reason: str | None = None, by: str | None = None
    ) -> AliasDocument:
        """Undo the alias's last move: restore the version (and canary split) it had before.

        Rolling back twice undoes the rollback, like an undo that is itself recorded in the history."""

        def earlier(current: AliasDocument | None) -> tuple[int, CanarySplit | None]:
            if current is None:
                raise NotFound(f"model '{name}': alias '{alias}' is not set")
            last = current.history[-1] if current.history else None
            if last is None or last.from_version is None:
                raise NotFound(
                    f"alias '{name}@{alias}': expected an earlier target to roll back to, got none"
                )
            return last.from_version, current.history[-2].canary if len(current.history) >= 2 else None

        return self._move_alias(name, alias, earlier, reason=reason or "rollback", by=by)

    def delete_alias(self, name: str, alias: str, *, expected_version: int | None = None) -> None:
        self._check_alias_name(name, alias)
        stored = self.registry.alias_document(name, alias)
        if stored is None:
            raise NotFound(f"model '{name}': alias '{alias}' is not set")
        if expected_version is not None and stored.document.version != expected_version:
            raise VersionConflict(
                f"alias '{name}@{alias}': expected it at version {expected_version}, "
                f"got {stored.document.version}"
            )
        if not self.registry.delete_document(self.registry.alias_key(name, alias), etag=stored.etag):
            raise VersionConflict(
                f"alias '{name}@{alias}' was moved while being deleted; re-read it and retry"
            )

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = "production",
        force: bool = False,
        reason: str | None = None,
        by: str | None = None,
        expected_version: int | None = None,
    ) -> AliasDocument:
        """Move `alias` to `version` if it does not regress the model's primary metric.

        A failed parity check always refuses; a regression refuses unless `force` with a reason. The
        decision is `gate`'s, so what the gate shows is what a promotion does. `expected_version` is the
        alias as the caller judged it (NO_ALIAS: unset): a promotion judged against another version is a
        VersionConflict, so a forced move never overrides a move its author did not see."""
        gate = self.gate(name, version, alias=alias)
        if expected_version is not None and (gate.current_version or NO_ALIAS) != expected_version:
            raise VersionConflict(
                f"alias '{name}@{alias}': expected it at version {expected_version or 'unset'}, "
                f"got {gate.current_version or 'unset'}; check the gate again"
            )
        if gate.verdict == REFUSED or (gate.verdict == NEEDS_FORCE and not force):
            raise PromotionRefused(gate.message or f"promote '{name}' v{version}: refused")
        if gate.verdict == NEEDS_FORCE and not reason:
            raise InvalidInput("promote: forcing past the gate: expected a reason, got none")

        def keep_canary(fresh: AliasDocument | None) -> tuple[int, CanarySplit | None]:
            # A running canary survives a promotion, unless the promoted version is the canary itself.
            canary = fresh.canary if fresh else None
            return version, None if canary is not None and canary.version == version else canary

        return self._move_alias(
            name,
            alias,
            keep_canary,
            # The alias as the gate judged it: a move in between is a conflict, not an unjudged promotion.
            expected_version=gate.current_version or NO_ALIAS,
            reason=reason,
            by=by,
        )

    def gate(self, name: str, version: int, *, alias: str = "production") -> GateVerdict:
        """The promotion gate's verdict on moving `alias` to `version`, reading only."""
        self._check_alias_name(name, alias)
        self._require_version(name, version)
        candidate = self.registry.manifest(name, version)
        stored = self.registry.alias_document(name, alias)
        current_version = stored.document.version if stored else None
        current = None
        if current_version is not None:
            same = current_version == version
            current = candidate if same else self.registry.manifest(name, current_version)
        metric = candidate.primary_metric
        verdict, message = ALLOWED, None
        if candidate.parity is not None and not candidate.parity.passed:
            verdict, message = (
                REFUSED,
                (
                    f"promote '{name}' v{version}: its parity check failed (max abs diff "
                    f"{candidate.parity.max_abs_diff:.3g} > {candidate.parity.tolerance:.3g})"
                ),
            )
        elif self._status(name, version) == "archived":
            verdict, message = REFUSED, f"promote '{name}' v{version}: the version is archived"
        elif current is not None and current_version != version:
            regression = _regression(current, candidate)
            if regression:
                verdict, message = (
                    NEEDS_FORCE,
                    (
                        f"promote '{name}' v{version} to '{alias}': {regression}; "
                        "force it with a reason to override"
                    ),
                )
        return GateVerdict(
            name=name,
            version=version,
            alias=alias,
            current_version=current_version,
            verdict=verdict,
            message=message,
            metric=metric,
            goal=candidate.primary_metric_goal if metric is not None else None,
            current_value=current.metrics.get(metric) if current is not None and metric else None,
            candidate_value=candidate.metrics.get(metric) if metric else None,
        )

    # ---- versions

    def set_tags(
        self,
        name: str,
        version: int,
        tags: Mapping[str, str],
        *,
        remove: Iterable[str] = (),
        by: str | None = None,
    ) -> VersionMeta:
        self._require_version(name, version)
        removed = set(remove)
        for key, value in tags.items():
            if not key or len(key) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH:
                raise InvalidInput(f"tags: expected keys and values of 1-{MAX_TAG_LENGTH} characters")

        def change(current: VersionMeta | None) -> VersionMeta:
            merged = {k: v for k, v in (current.tags if current else {}).items() if k not in removed}
            merged.update(tags)
            if len(merged) > MAX_TAGS:
                raise InvalidInput(f"tags: expected at most {MAX_TAGS} per version, got {len(merged)}")
            status = current.status if current else "ready"
            return VersionMeta(status=status, tags=merged, updated_at=utc_now(), updated_by=by)

        key = self.registry.meta_key(name, version)
        return self._update(key, lambda: self.registry.version_meta(name, version), change)

    def archive(self, name: str, version: int, *, by: str | None = None) -> VersionMeta:
        """Retire a version from implicit use: `latest` and the default skip it, and no alias or canary may
        move onto it. Pinned by number it is still served, so reproductions and pinned clients keep working.
        Refused while an alias points at it."""
        self._require_version(name, version)
        self._refuse_if_aliased(name, version, "archive")

        def change(current: VersionMeta | None) -> VersionMeta:
            tags = current.tags if current else {}
            return VersionMeta(status="archived", tags=tags, updated_at=utc_now(), updated_by=by)

        key = self.registry.meta_key(name, version)
        archived = self._update(key, lambda: self.registry.version_meta(name, version), change)
        settle_latest(self.registry, name, version)
        return archived

    def delete_version(self, name: str, version: int) -> None:
        """Remove a version: the manifest first, so readers stop seeing it before its files go. Its claim
        stays, so its number is never given to another version (warm servers still holding it answer 404
        once MAAS_ALIAS_TTL passes). The latest pointer moves off it first, and is settled again last in
        case a concurrent writer put it back meanwhile."""
        self._require_version(name, version)
        self._refuse_if_aliased(name, version, "delete")
        settle_latest(self.registry, name, version, leaving=True)
        self.registry.retire_version_folder(name, version)
        self.registry.delete_keys([self.registry.meta_key(name, version)])
        settle_latest(self.registry, name, version)

    def repair_latest(self, name: str) -> int | None:
        """Write the `latest` pointer from the listing (a registry published before it existed); the version
        it names now, or None when no version is ready."""
        validate_name(name)
        return repair_latest(self.registry, name)

    def diff(self, name: str, a: int, b: int) -> list[Difference]:
        first, second = self.registry.manifest(name, a), self.registry.manifest(name, b)
        sections: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {
            "params": (first.params, second.params),
            "metrics": (first.metrics, second.metrics),
            "signature": (_signature_table(first), _signature_table(second)),
            "data": (
                {"dataset_hash": first.lineage.dataset_hash},
                {"dataset_hash": second.lineage.dataset_hash},
            ),
            "packages": (first.lineage.packages, second.lineage.packages),
            "lineage": (
                {"recipe": first.lineage.recipe, "code_version": first.lineage.code_version},
                {"recipe": second.lineage.recipe, "code_version": second.lineage.code_version},
            ),
        }
        differences = []
        for section, (left, right) in sections.items():
            for key in sorted(set(left) | set(right)):
                if left.get(key) != right.get(key):
                    differences.append(Difference(section, key, left.get(key), right.get(key)))
        return differences

    def collect_garbage(self, name: str, *, older_than: timedelta, apply: bool = False) -> list[int]:
        """Version folders that never got a manifest (a publisher died) and are older than `older_than`.

        Listed only, unless `apply`; the age threshold keeps a publish that is still uploading safe. Their
        files go but their claims stay, as for a deleted version, so the numbers are never given again; a
        folder holding its claim alone is already collected."""
        cutoff = datetime.now(UTC) - older_than
        abandoned = []
        for version, objects in sorted(self.registry.version_folders(name).items()):
            prefix = self.registry.version_prefix(name, version)
            files = {key.removeprefix(prefix) for key, _ in objects}
            if MANIFEST_FILE in files or files <= {CLAIM_FILE}:
                continue
            if max(modified for _, modified in objects) < cutoff:
                abandoned.append(version)
                if apply:
                    self.registry.retire_version_folder(name, version)
        return abandoned

    # ---- helpers

    def _move_alias(
        self,
        name: str,
        alias: str,
        choose: Callable[[AliasDocument | None], tuple[int, CanarySplit | None]],
        *,
        expected_version: int | None = None,
        reason: str | None = None,
        by: str | None = None,
    ) -> AliasDocument:
        """One CAS move. `choose` sees the freshest document on every attempt, so a retried write never
        reinstates what a concurrent writer just changed (a canary it removed, say)."""
        self._check_alias_name(name, alias)
        checked: set[int] = set()

        def move(current: AliasDocument | None) -> AliasDocument:
            found = current.version if current else NO_ALIAS
            if expected_version is not None and found != expected_version:
                raise VersionConflict(
                    f"alias '{name}@{alias}': expected it at version {expected_version or 'unset'}, "
                    f"got {found or 'unset'}"
                )
            version, canary = choose(current)
            for target in {version, *([canary.version] if canary else [])} - checked:
                self._require_ready(name, alias, target)
                checked.add(target)
            now = utc_now()
            entry = AliasMove(
                at=now,
                from_version=current.version if current else None,
                to_version=version,
                canary=canary,
                reason=reason,
                by=by,
            )
            history = [*(current.history if current else []), entry][-ALIAS_HISTORY_LIMIT:]
            return AliasDocument(
                version=version, canary=canary, updated_at=now, updated_by=by, reason=reason, history=history
            )

        return self._update(self.registry.alias_key(name, alias), self._read_alias(name, alias), move)

    def _require_ready(self, name: str, alias: str, version: int) -> None:
        if not self.registry.manifest_exists(name, version):
            raise NotFound(f"model '{name}' version {version}: not found")
        if self._status(name, version) == "archived":
            raise VersionInUse(f"alias '{name}@{alias}': expected a ready version, got archived v{version}")

    def _read_alias(self, name: str, alias: str) -> Callable[[], Stored[AliasDocument] | None]:
        return lambda: self.registry.alias_document(name, alias)

    def _update(self, key: str, read: Callable[[], Stored[D] | None], change: Callable[[D | None], D]) -> D:
        for _ in range(MAX_CAS_ATTEMPTS):
            stored = read()
            document = change(stored.document if stored else None)
            if self.registry.write_document(key, document, etag=stored.etag if stored else None) is not None:
                return document
        raise VersionConflict(f"{key}: too many concurrent writers; retry later")

    def _check_alias_name(self, name: str, alias: str) -> None:
        validate_name(name)
        if not ALIAS_PATTERN.fullmatch(alias) or alias[:1].isdigit():
            raise InvalidInput(f"alias: expected [a-z0-9._-] starting with a letter, got {alias[:64]!r}")
        if alias == LATEST:
            raise InvalidInput("alias: 'latest' is reserved for the newest version and cannot be set")

    def _require_version(self, name: str, version: int) -> None:
        validate_name(name)
        if not self.registry.manifest_exists(name, version):
            raise NotFound(f"model '{name}' version {version}: not found")

    def _refuse_if_aliased(self, name: str, version: int, action: str) -> None:
        holders = sorted(
            alias for alias, doc in self.registry.aliases(name).items() if doc.points_at(version)
        )
        if holders:
            raise VersionInUse(f"{action} '{name}' v{version}: expected no alias on it, got {holders}")

    def _status(self, name: str, version: int) -> str:
        return self.registry.version_status(name, version)


def _regression(current: Manifest, candidate: Manifest) -> str | None:
    metric = candidate.primary_metric
    if metric is None or metric not in candidate.metrics or metric not in current.metrics:
        return None
    old, new = current.metrics[metric], candidate.metrics[metric]
    worse = new > old if candidate.primary_metric_goal == "minimize" else new < old
    if not worse:
        return None
    return (
        f"{metric} ({candidate.primary_metric_goal}) regresses from {old:.6g} (v{current.version}) "
        f"to {new:.6g} (v{candidate.version})"
    )


def _signature_table(manifest: Manifest) -> dict[str, str]:
    table = {}
    for kind, specs in (("input", manifest.signature.inputs), ("output", manifest.signature.outputs)):
        for spec in specs:
            table[f"{kind} {spec.name}"] = f"{spec.datatype} {spec.shape}"
    return table
