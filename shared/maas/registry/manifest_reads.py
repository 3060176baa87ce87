"""Reading a version's manifest: its bytes from storage, its signature checked, then parsed and held to the
version it was read for. One path for `manifest.json` and for its copy in the `latest` pointer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from maas.config import ENV_MANIFEST_SIGNING
from maas.errors import IntegrityError, NotFound
from maas.objects import storage_errors
from maas.registry.integrity import integrity_failure
from maas.registry.manifest import MANIFEST_FILE, Manifest
from maas.registry.signing import ManifestSigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def read_object(s3: S3Client, bucket: str, key: str, *, what: str) -> bytes:
    with storage_errors(f"reading {what}"):
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def read_signature(s3: S3Client, bucket: str, key: str, name: str, version: int) -> str:
    """The version's `manifest.sig` document; IntegrityError when there is none."""
    try:
        stored = read_object(
            s3, bucket, key, what=f"the manifest signature of model '{name}' version {version}"
        )
    except NotFound:
        raise IntegrityError(
            f"model '{name}' version {version}: {MANIFEST_FILE} is not signed, and {ENV_MANIFEST_SIGNING} "
            "requires it"
        ) from None
    return stored.decode("utf-8", errors="replace")


def parse_manifest(
    name: str,
    version: int,
    body: bytes,
    *,
    key: str,
    signer: ManifestSigner | None,
    signature: Callable[[], str],
    signature_key: str,
) -> Manifest:
    """`body` (read from `key`) as the manifest of `name` v`version`: refused unless, with a signer, the
    document `signature()` returns verifies it, and unless it describes exactly that version."""
    if signer is not None:
        # Before parsing: nothing of an unverified manifest is believed, not even its name.
        try:
            signer.verify(body, signature())
        except IntegrityError as exc:
            raise integrity_failure(
                f"model '{name}' version {version}: {exc.message}", detail=f"{signature_key}: {exc.detail}"
            ) from None
    try:
        manifest = Manifest.model_validate_json(body)
    except ValueError as exc:
        raise integrity_failure(
            f"model '{name}' version {version}: {MANIFEST_FILE}: expected a valid manifest, got one that "
            "does not parse or validate",
            detail=f"{key}: {exc}",
        ) from None
    if (manifest.name, manifest.version) != (name, version):
        # A manifest copied between folders (or into another model's pointer) must not pass for this one.
        raise integrity_failure(
            f"model '{name}' version {version}: {MANIFEST_FILE}: expected the manifest of this version, "
            "got one describing another model or version",
            detail=f"{key} describes model {manifest.name!r} version {manifest.version}",
        )
    return manifest


class HandedOffManifests:
    """Manifests a resolution read (a pinned version's, or the latest pointer's copy), kept a short while for
    the load that follows, which then needs no GET of its own. Taking one removes it; version folders never
    change, so the time limit only bounds what is kept."""

    def __init__(self, *, seconds: float = 30.0, entries: int = 8) -> None:
        self._seconds = seconds
        self._entries = entries
        self._held: dict[tuple[str, int], tuple[float, Manifest]] = {}
        self._lock = threading.Lock()

    def put(self, manifest: Manifest) -> None:
        key = (manifest.name, manifest.version)
        with self._lock:
            self._held.pop(key, None)
            self._held[key] = (time.monotonic(), manifest)
            while len(self._held) > self._entries:
                self._held.pop(next(iter(self._held)))

    def take(self, name: str, version: int) -> Manifest | None:
        with self._lock:
            held = self._held.pop((name, version), None)
        if held is None or time.monotonic() - held[0] > self._seconds:
            return None
        return held[1]
