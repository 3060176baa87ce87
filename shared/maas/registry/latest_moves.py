"""Moving the `latest` pointer (maas.registry.latest_pointer) as versions come and go, by compare-and-swap.

A publish moves it up to its version, never down. Archiving or deleting the version it names moves it down
to the newest version still ready, by the listing, or deletes it when none is left. A publish racing an
archive or delete of its own version ends right either way: the publisher checks its version again after
moving the pointer, and the other writer checks the pointer after its change, so whichever comes second sees
the other's write (S3 is strongly consistent) and moves the pointer off the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maas.errors import NotFound
from maas.registry.exceptions import VersionConflict
from maas.registry.latest_pointer import PointerCopy, delete_pointer, pointer_state, write_pointer

if TYPE_CHECKING:
    from maas.registry.store import ModelRegistry

# How often a move that lost a race is retried against the fresh pointer before giving up.
MAX_POINTER_ATTEMPTS = 32


def advance_latest(registry: ModelRegistry, name: str, copy: PointerCopy) -> None:
    """Point `latest` at `copy`'s freshly committed version, unless it names that one or a newer one
    already; then move it off again if the version was archived or deleted in the meantime."""
    key, what = registry.latest_key(name), _what(name)
    for _ in range(MAX_POINTER_ATTEMPTS):
        state = pointer_state(registry.s3, registry.bucket, key, what=what)
        if state is not None and state.version >= copy.version:
            break
        etag = state.etag if state is not None else None
        if write_pointer(registry.s3, registry.bucket, key, copy, etag=etag, what=what):
            break
    else:
        raise VersionConflict(f"{what}: too many concurrent writers; retry later")
    if (
        not registry.manifest_exists(name, copy.version)
        or registry.version_status(name, copy.version) != "ready"
    ):
        settle_latest(registry, name, copy.version)


def settle_latest(registry: ModelRegistry, name: str, version: int, *, leaving: bool = False) -> None:
    """After `version` was archived or deleted: if `latest` names it, move it to the newest version still
    ready, or delete it when there is none. `leaving`: before `version` is deleted, while it is still listed,
    so the pointer never names a version whose files are going (a deleter that dies half way leaves it on
    one that serves)."""
    key, what = registry.latest_key(name), _what(name)
    for _ in range(MAX_POINTER_ATTEMPTS):
        state = pointer_state(registry.s3, registry.bucket, key, what=what)
        if state is None or state.version != version:
            return
        if _swap_to_listed(registry, name, state.etag, excluding=version if leaving else None):
            return
    raise VersionConflict(f"{what}: too many concurrent writers; retry later")


def repair_latest(registry: ModelRegistry, name: str) -> int | None:
    """Write `latest` from the listing, whatever it names now: for a registry published before the pointer
    existed, or one that a writer dying between its change and the pointer's left behind. Returns the
    version it names afterwards (None: no version is ready, and there is no pointer)."""
    key, what = registry.latest_key(name), _what(name)
    for _ in range(MAX_POINTER_ATTEMPTS):
        state = pointer_state(registry.s3, registry.bucket, key, what=what)
        try:
            target: int | None = registry.latest_listed_version(name)
        except NotFound:
            target = None
        if (state.version if state is not None else None) == target:
            return target
        if _swap_to_listed(registry, name, state.etag if state is not None else None):
            return target
    raise VersionConflict(f"{what}: too many concurrent writers; retry later")


def _swap_to_listed(
    registry: ModelRegistry, name: str, etag: str | None, *, excluding: int | None = None
) -> bool:
    """One compare-and-swap of the pointer (the object with `etag`, or none) to the listing's latest
    version, or its deletion when no version is ready; False when something changed in between."""
    key, what = registry.latest_key(name), _what(name)
    try:
        target = registry.latest_listed_version(name, excluding=excluding)
    except NotFound:
        return etag is None or delete_pointer(registry.s3, registry.bucket, key, etag=etag, what=what)
    try:
        copy = registry.manifest_copy(name, target)
    except NotFound:
        return False  # deleted since the listing: list again
    return write_pointer(registry.s3, registry.bucket, key, copy, etag=etag, what=what)


def _what(name: str) -> str:
    return f"the latest pointer of model '{name}'"
