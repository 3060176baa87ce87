"""The model registry: versions, aliases and artifacts in S3, with no database.

Layout under the configured prefix:
    models/<name>/versions/<n>/claim.json        written first, create-only: takes the number n for good
    models/<name>/versions/<n>/<artifact>        written create-only (If-None-Match: *)
    models/<name>/versions/<n>/manifest.sig      the manifest's MAC, with MAAS_MANIFEST_SIGNING
    models/<name>/versions/<n>/manifest.json     written last: the commit point
    models/<name>/aliases/<alias>.json           {"version": n}, moved with If-Match
    models/<name>/meta/<n>.json                  status (ready or archived) and tags, moved with If-Match
    models/<name>/latest.json                    a copy of the newest ready version's manifest, moved by
                                                 compare-and-swap (maas.registry.latest_pointer)

A version number is never given twice. The next number is one above the highest folder, and a folder is
never emptied: deleting a version, or collecting an abandoned upload, removes every file but `claim.json`
(writing it first for a folder from before claims). So a deleted version's number stays taken, and a
publisher that read the folder list before the delete still loses the create-only claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from maas.aws_clients import s3_client
from maas.config import Settings
from maas.errors import NotFound, Unavailable
from maas.objects import DEFAULT_PART_BYTES, put_new, storage_errors
from maas.registry.artifact_downloads import download_artifact, read_artifact
from maas.registry.artifact_uploads import ArtifactSource, artifact_sources, upload_artifact
from maas.registry.documents import AliasDocument, CanarySplit, VersionClaim, VersionMeta, utc_now
from maas.registry.exceptions import VersionConflict
from maas.registry.integrity import integrity_failure
from maas.registry.latest_moves import advance_latest
from maas.registry.latest_pointer import LATEST_POINTER_FILE, PointerCopy, read_pointer
from maas.registry.manifest import (
    MANIFEST_FILE,
    Artifact,
    Manifest,
    ManifestDraft,
)
from maas.registry.manifest_reads import HandedOffManifests, parse_manifest, read_object, read_signature
from maas.registry.references import LATEST, ModelRef, validate_name
from maas.registry.signing import SIGNATURE_FILE, ManifestSigner, signer_from_settings
from maas.registry.storage_calls import delete_document, delete_keys, list_keys, write_document

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_VERSION_CLAIM_ATTEMPTS = 20
CLAIM_FILE = "claim.json"
# Files the registry writes into a version folder itself; no artifact may take their names.
REGISTRY_FILES = frozenset({CLAIM_FILE, MANIFEST_FILE, SIGNATURE_FILE})
ARCHIVED = "archived"
D = TypeVar("D", bound=BaseModel)
__all__ = [
    "ARCHIVED",
    "CLAIM_FILE",
    "REGISTRY_FILES",
    "ModelRegistry",
    "ResolvedTarget",
    "Stored",
    "VersionConflict",
]


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """What a reference points at now: a version, and for an alias possibly a canary split."""

    version: int
    canary: CanarySplit | None = None


@dataclass(frozen=True, slots=True)
class Stored(Generic[D]):
    document: D
    etag: str


class ModelRegistry:
    """Reads and writes the registry layout. The S3 client is injected, so tests point it at moto.

    With a `signer` (MAAS_MANIFEST_SIGNING), publishing signs each manifest and every manifest read
    verifies it: an unsigned or altered manifest is an IntegrityError."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        prefix: str = "",
        default_alias: str = "production",
        signer: ManifestSigner | None = None,
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.default_alias = default_alias
        self.signer = signer
        # A file's part size when it is published (grown for files past 10,000 parts); S3's floor is 5 MiB.
        self.part_bytes = part_bytes
        # Manifests a resolution read, waiting for the load that follows (HANDED_OFF_SECONDS).
        self._handed_off = HandedOffManifests()
        # Reads made at once (an alias and the latest pointer); its threads start on first use.
        self._reads = ThreadPoolExecutor(2, "registry-reads")

    @property
    def s3(self) -> S3Client:
        return self._s3

    @classmethod
    def from_settings(cls, settings: Settings, s3: S3Client | None = None) -> ModelRegistry:
        """The registry the settings name (bucket, prefix, default alias, signer), over `s3` or the
        process's client for the settings' endpoint."""
        return cls(
            s3 or s3_client(settings.endpoint_url),
            settings.bucket,
            prefix=settings.prefix,
            default_alias=settings.default_alias,
            signer=signer_from_settings(settings),
        )

    # ---- keys

    def model_prefix(self, name: str) -> str:
        return f"{self.prefix}models/{name}/"

    def version_prefix(self, name: str, version: int) -> str:
        return f"{self.model_prefix(name)}versions/{version}/"

    def alias_key(self, name: str, alias: str) -> str:
        return f"{self.model_prefix(name)}aliases/{alias}.json"

    def latest_key(self, name: str) -> str:
        return self.model_prefix(name) + LATEST_POINTER_FILE

    # ---- reading

    def model_index(self) -> dict[str, list[int]]:
        """Every model with its committed versions, from one listing of the registry."""
        prefix = f"{self.prefix}models/"
        index: dict[str, list[int]] = {}
        with storage_errors(f"listing models in s3://{self.bucket}/{prefix}"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(prefix) :].split("/")
                    if (
                        len(parts) == 4
                        and parts[1] == "versions"
                        and parts[3] == MANIFEST_FILE
                        and parts[2].isdigit()
                    ):
                        index.setdefault(parts[0], []).append(int(parts[2]))
        return {name: sorted(versions) for name, versions in sorted(index.items())}

    def list_models(self) -> list[str]:
        return list(self.model_index())

    def versions(self, name: str) -> list[int]:
        """Committed versions only: a folder without a manifest does not exist for readers."""
        validate_name(name)
        prefix = f"{self.model_prefix(name)}versions/"
        found: list[int] = []
        with storage_errors(f"listing versions of model '{name}'"):
            for key in list_keys(self._s3, self.bucket, prefix):
                folder, _, file = key[len(prefix) :].partition("/")
                if file == MANIFEST_FILE and folder.isdigit():
                    found.append(int(folder))
        return sorted(found)

    def latest_version(self, name: str) -> int:
        """The newest version that is not archived: an archived version is served only when pinned.

        One GET of the `latest` pointer, whose manifest the load that follows then uses; a listing where
        there is no pointer (a registry published before it existed, or one whose versions are all gone)."""
        latest = self._latest_from_pointer(name)
        return latest if latest is not None else self.latest_listed_version(name)

    def latest_listed_version(self, name: str, *, excluding: int | None = None) -> int:
        """`latest_version` from the listing and each version's status: what the pointer is moved to.
        `excluding`: a version about to be deleted, still listed, that the pointer must leave first."""
        versions = [version for version in self.versions(name) if version != excluding]
        if not versions:
            raise NotFound(f"model '{name}': not found (no published version)")
        for version in reversed(versions):
            if self.version_status(name, version) != ARCHIVED:
                return version
        raise NotFound(
            f"model '{name}': expected a version that is not archived, got {len(versions)} archived ones; "
            "an archived version is served only when pinned by number"
        )

    def version_status(self, name: str, version: int) -> str:
        """'ready' or 'archived', from the version's metadata document (absent: ready)."""
        stored = self.version_meta(name, version)
        return stored.document.status if stored else "ready"

    def meta_key(self, name: str, version: int) -> str:
        return f"{self.model_prefix(name)}meta/{version}.json"

    def alias_document(self, name: str, alias: str) -> Stored[AliasDocument] | None:
        return self._read_document(self.alias_key(name, alias), AliasDocument, f"alias '{name}@{alias}'")

    def aliases(self, name: str) -> dict[str, AliasDocument]:
        prefix = f"{self.model_prefix(name)}aliases/"
        found: dict[str, AliasDocument] = {}
        with storage_errors(f"listing aliases of model '{name}'"):
            paginator = self._s3.get_paginator("list_objects_v2")
            keys = [
                item["Key"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
        for key in keys:
            alias = key[len(prefix) :].removesuffix(".json")
            stored = self.alias_document(name, alias)
            if stored is not None:
                found[alias] = stored.document
        return found

    def version_meta(self, name: str, version: int) -> Stored[VersionMeta] | None:
        return self._read_document(
            self.meta_key(name, version), VersionMeta, f"metadata of '{name}' v{version}"
        )

    def check_reachable(self) -> None:
        """Raise Unavailable unless the models prefix can be listed (the permission readers already have)."""
        try:
            with storage_errors(f"reaching s3://{self.bucket}/{self.prefix}models/"):
                self._s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}models/", MaxKeys=1)
        except NotFound:
            raise Unavailable(f"bucket '{self.bucket}': not found") from None

    def resolve(self, ref: ModelRef) -> int:
        """Turn a reference into a committed version number (an alias's main version)."""
        return self.resolve_target(ref).version

    def resolve_target(self, ref: ModelRef) -> ResolvedTarget:
        validate_name(ref.name)
        if ref.version is not None:
            # The manifest itself rather than a HEAD: the load that follows needs it anyway (handed off).
            try:
                self._handed_off.put(self._read_manifest(ref.name, ref.version))
            except NotFound:
                raise NotFound(f"model '{ref.name}' version {ref.version}: not found") from None
            return ResolvedTarget(ref.version)
        if ref.alias == LATEST:
            return ResolvedTarget(self.latest_version(ref.name))
        alias = ref.alias or self.default_alias
        if ref.alias is not None:
            stored = self.alias_document(ref.name, alias)
            if stored is None:
                raise NotFound(f"model '{ref.name}': alias '{alias}' is not set")
            return ResolvedTarget(stored.document.version, stored.document.canary)
        # A bare name: the default alias wins when it is set, else the latest version. Both are read at
        # once, so an unset alias costs no round trip of its own.
        pointer = self._reads.submit(self._latest_from_pointer, ref.name)
        stored = self.alias_document(ref.name, alias)
        if stored is not None:
            pointer.cancel()
            return ResolvedTarget(stored.document.version, stored.document.canary)
        latest = pointer.result()
        return ResolvedTarget(latest if latest is not None else self.latest_listed_version(ref.name))

    def _latest_from_pointer(self, name: str) -> int | None:
        """The version the `latest` pointer names, its manifest verified and handed off; None without one."""
        key = self.latest_key(name)
        copy = read_pointer(self._s3, self.bucket, key, what=f"the latest pointer of model '{name}'")
        if copy is None:
            return None
        self._handed_off.put(self._parse_manifest(name, copy.version, copy.manifest, key, copy.signature))
        return copy.version

    def manifest(self, name: str, version: int) -> Manifest:
        """The version's manifest, verified: the one its resolution just read, or a fresh GET."""
        handed_off = self._handed_off.take(name, version)
        return handed_off if handed_off is not None else self._read_manifest(name, version)

    def _read_manifest(self, name: str, version: int) -> Manifest:
        copy = self.manifest_copy(name, version, signed=False)
        return self._parse_manifest(
            name, version, copy.manifest, self.version_prefix(name, version) + MANIFEST_FILE
        )

    def manifest_copy(self, name: str, version: int, *, signed: bool = True) -> PointerCopy:
        """The version's manifest bytes, unparsed, with their signature document (`signed`, with a signer):
        what the latest pointer copies."""
        key = self.version_prefix(name, version) + MANIFEST_FILE
        body = read_object(
            self._s3, self.bucket, key, what=f"the manifest of model '{name}' version {version}"
        )
        signature = None
        if signed and self.signer is not None:
            signature = read_signature(
                self._s3, self.bucket, self.signature_key(name, version), name, version
            )
        return PointerCopy(version, body, signature)

    def _parse_manifest(
        self, name: str, version: int, body: bytes, key: str, signature: str | None = None
    ) -> Manifest:
        """`body` as the manifest of `name` v`version`; its signature document is read from storage unless
        given (the pointer carries its own)."""
        signature_key = self.signature_key(name, version)
        return parse_manifest(
            name,
            version,
            body,
            key=key,
            signer=self.signer,
            signature=lambda: (
                signature or read_signature(self._s3, self.bucket, signature_key, name, version)
            ),
            signature_key=signature_key,
        )

    def signature_key(self, name: str, version: int) -> str:
        return self.version_prefix(name, version) + SIGNATURE_FILE

    def read_artifact(self, manifest: Manifest, artifact: Artifact) -> bytes:
        """Fetch one (small) artifact into memory, verifying its size and sha256 against the manifest as it
        streams."""
        return read_artifact(
            self._s3,
            self.bucket,
            self._artifact_key(manifest, artifact),
            artifact,
            what=_what(manifest, artifact),
        )

    def download_artifact(self, manifest: Manifest, artifact: Artifact, target: Path) -> None:
        """Fetch one artifact into `target` with parallel ranged GETs (one per part; one streamed GET for an
        artifact without parts), each range's sha256 checked against the manifest as it lands. A mismatch is
        an IntegrityError naming the artifact and part; on any failure `target` is removed."""
        download_artifact(
            self._s3,
            self.bucket,
            self._artifact_key(manifest, artifact),
            artifact,
            target,
            what=_what(manifest, artifact),
        )

    def _artifact_key(self, manifest: Manifest, artifact: Artifact) -> str:
        return self.version_prefix(manifest.name, manifest.version) + artifact.path

    # ---- writing

    def publish(self, name: str, files: Mapping[str, bytes | Path], draft: ManifestDraft) -> Manifest:
        """Publish an immutable version; returns the committed manifest.

        bytes are written in one create-only PUT; a Path is streamed from disk in parallel parts, read once
        for its sha256, its parts' sha256 and the upload (maas.registry.artifact_uploads). The first
        artifact's create-only write claims the version number, so two concurrent publishers never share
        one; the loser moves on to the next number. The manifest is written last.
        """
        validate_name(name)
        # Refused before anything is uploaded: an unsafe path, a missing file, a pickle, a graph over
        # protobuf's 2 GiB or one reading files outside its version.
        sources = artifact_sources(name, files, draft, registry_files=REGISTRY_FILES)
        ordered = [draft.model_file, *sorted(p for p in files if p != draft.model_file)]

        version = self._next_version_number(name)
        for _ in range(MAX_VERSION_CLAIM_ATTEMPTS):
            # The claim takes the number; the first artifact's create-only write also has to succeed, since a
            # publisher from before claims takes a number with its first artifact alone.
            if self._claim(name, version):
                first = self._upload(name, version, ordered[0], sources[ordered[0]])
                if first is not None:
                    break
            version += 1
        else:
            raise VersionConflict(
                f"model '{name}': could not claim a version after many concurrent publishes"
            )

        artifacts = [first]
        for path in ordered[1:]:
            uploaded = self._upload(name, version, path, sources[path])
            if uploaded is None:
                raise VersionConflict(f"model '{name}' version {version}: artifact '{path}' already exists")
            artifacts.append(uploaded)
        manifest = draft.commit(name, version, artifacts)
        body = manifest.model_dump_json(indent=2).encode()
        signature = self.signer.sign(body) if self.signer is not None else None
        if signature is not None and not self._put_new(self.signature_key(name, version), signature.encode()):
            raise VersionConflict(f"model '{name}' version {version}: manifest signature already exists")
        if not self._put_new(self.version_prefix(name, version) + MANIFEST_FILE, body):
            raise VersionConflict(f"model '{name}' version {version}: manifest already exists")
        advance_latest(self, name, PointerCopy(version, body, signature))
        return manifest

    def write_document(self, key: str, document: BaseModel, *, etag: str | None) -> str | None:
        """Compare-and-swap write (maas.registry.storage_calls): the new ETag, or None on a lost race."""
        return write_document(self._s3, self.bucket, key, document, etag=etag)

    def delete_document(self, key: str, *, etag: str) -> bool:
        """Compare-and-swap delete: only the exact object read. False when it changed in between."""
        return delete_document(self._s3, self.bucket, key, etag=etag)

    def delete_keys(self, keys: list[str]) -> None:
        delete_keys(self._s3, self.bucket, keys)

    def retire_version_folder(self, name: str, version: int) -> None:
        """Delete everything in a version folder but its claim, so the number stays taken.

        The claim is written first where it is missing (a folder from before claims): a folder with no object
        left would stop counting when the next number is chosen. The manifest goes next, so readers stop
        seeing the version before its files go."""
        prefix = self.version_prefix(name, version)
        keys = [key for key, _ in self.version_folders(name).get(version, [])]
        claim, manifest = prefix + CLAIM_FILE, prefix + MANIFEST_FILE
        if claim not in keys:
            self._claim(name, version)
        if manifest in keys:
            self.delete_keys([manifest])
        rest = [key for key in keys if key not in (claim, manifest)]
        if rest:
            self.delete_keys(rest)

    def version_folders(self, name: str) -> dict[int, list[tuple[str, datetime]]]:
        """Every claimed version folder, committed, abandoned or retired (its claim alone), with its objects'
        keys and modification times."""
        prefix = f"{self.model_prefix(name)}versions/"
        folders: dict[int, list[tuple[str, datetime]]] = {}
        with storage_errors(f"listing version folders of model '{name}'"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    folder = item["Key"][len(prefix) :].split("/", 1)[0]
                    if folder.isdigit():
                        folders.setdefault(int(folder), []).append((item["Key"], item["LastModified"]))
        return folders

    def manifest_exists(self, name: str, version: int) -> bool:
        try:
            with storage_errors(f"checking model '{name}' version {version}"):
                self._s3.head_object(
                    Bucket=self.bucket, Key=self.version_prefix(name, version) + MANIFEST_FILE
                )
        except NotFound:
            return False
        return True

    def _read_document(self, key: str, model: type[D], what: str) -> Stored[D] | None:
        try:
            with storage_errors(f"reading {what}"):
                response = self._s3.get_object(Bucket=self.bucket, Key=key)
                body = response["Body"].read()
        except NotFound:
            return None
        try:
            return Stored(model.model_validate_json(body), response["ETag"])
        except ValueError as exc:
            raise integrity_failure(
                f"{what}: expected a valid stored document, got one that does not parse or validate",
                detail=f"{key}: {exc}",
            ) from None

    # ---- helpers

    def _next_version_number(self, name: str) -> int:
        # Every folder counts, committed, abandoned or retired, so no number is given twice. Folders written
        # before claims existed count the same way.
        prefix = f"{self.model_prefix(name)}versions/"
        highest = 0
        with storage_errors(f"listing version folders of model '{name}'"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    folder = common["Prefix"][len(prefix) :].rstrip("/")
                    if folder.isdigit():
                        highest = max(highest, int(folder))
        return highest + 1

    def _claim(self, name: str, version: int) -> bool:
        """Take `version` for good with a create-only write. False when it was already taken."""
        document = VersionClaim(claimed_at=utc_now()).model_dump_json().encode()
        return put_new(self._s3, self.bucket, self.version_prefix(name, version) + CLAIM_FILE, document)

    def _upload(self, name: str, version: int, path: str, source: ArtifactSource) -> Artifact | None:
        """Create-only write of one artifact; its manifest entry, or None when it already exists."""
        key = self.version_prefix(name, version) + path
        return upload_artifact(self._s3, self.bucket, key, path, source, part_bytes=self.part_bytes)

    def _put_new(self, key: str, data: bytes) -> bool:
        """Create-only write. False when the key already exists."""
        return put_new(self._s3, self.bucket, key, data, content_type="application/octet-stream")


def _what(manifest: Manifest, artifact: Artifact) -> str:
    return f"artifact '{artifact.path}' of model '{manifest.name}' v{manifest.version}"
