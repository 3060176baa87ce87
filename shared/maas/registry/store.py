"""The model registry: versions, aliases and artifacts in S3, with no database.

Layout under the configured prefix:
    models/<name>/versions/<n>/claim.json        written first, create-only: takes the number n for good
    models/<name>/versions/<n>/<artifact>        written create-only (If-None-Match: *)
    models/<name>/versions/<n>/manifest.sig      the manifest's MAC, with MAAS_MANIFEST_SIGNING
    models/<name>/versions/<n>/manifest.json     written last: the commit point
    models/<name>/aliases/<alias>.json           {"version": n}, moved with If-Match
    models/<name>/meta/<n>.json                  status (ready or archived) and tags, moved with If-Match

A version number is never given twice. The next number is one above the highest folder, and a folder is
never emptied: deleting a version, or collecting an abandoned upload, removes every file but `claim.json`
(writing it first for a folder from before claims). So a deleted version's number stays taken, and a
publisher that read the folder list before the delete still loses the create-only claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from maas.aws_clients import s3_client
from maas.config import ENV_MANIFEST_SIGNING, Settings
from maas.errors import IntegrityError, MaasError, NotFound, Unavailable
from maas.objects import DEFAULT_PART_BYTES, PreconditionFailed, put_new, storage_errors
from maas.registry.artifact_downloads import download_artifact, read_artifact
from maas.registry.artifact_uploads import ArtifactSource, artifact_sources, upload_artifact
from maas.registry.documents import AliasDocument, CanarySplit, VersionClaim, VersionMeta, utc_now
from maas.registry.integrity import integrity_failure
from maas.registry.manifest import (
    MANIFEST_FILE,
    Artifact,
    Manifest,
    ManifestDraft,
)
from maas.registry.references import LATEST, ModelRef, validate_name
from maas.registry.signing import SIGNATURE_FILE, ManifestSigner, signer_from_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

MAX_VERSION_CLAIM_ATTEMPTS = 20
CLAIM_FILE = "claim.json"
# Files the registry writes into a version folder itself; no artifact may take their names.
REGISTRY_FILES = frozenset({CLAIM_FILE, MANIFEST_FILE, SIGNATURE_FILE})
ARCHIVED = "archived"
D = TypeVar("D", bound=BaseModel)


class VersionConflict(MaasError, status=409):
    """A create-only or compare-and-swap write lost a race. HTTP 409."""


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
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    folder, _, file = item["Key"][len(prefix) :].partition("/")
                    if file == MANIFEST_FILE and folder.isdigit():
                        found.append(int(folder))
        return sorted(found)

    def latest_version(self, name: str) -> int:
        """The newest version that is not archived: an archived version is served only when pinned."""
        versions = self.versions(name)
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
            if not self.manifest_exists(ref.name, ref.version):
                raise NotFound(f"model '{ref.name}' version {ref.version}: not found")
            return ResolvedTarget(ref.version)
        if ref.alias == LATEST:
            return ResolvedTarget(self.latest_version(ref.name))
        alias = ref.alias or self.default_alias
        stored = self.alias_document(ref.name, alias)
        if stored is not None:
            return ResolvedTarget(stored.document.version, stored.document.canary)
        if ref.alias is None:
            return ResolvedTarget(self.latest_version(ref.name))
        raise NotFound(f"model '{ref.name}': alias '{alias}' is not set")

    def manifest(self, name: str, version: int) -> Manifest:
        key = self.version_prefix(name, version) + MANIFEST_FILE
        with storage_errors(f"reading the manifest of model '{name}' version {version}"):
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        if self.signer is not None:
            # Before parsing: nothing of an unverified manifest is believed, not even its name.
            self._verify_signature(name, version, body, self.signer)
        try:
            manifest = Manifest.model_validate_json(body)
        except ValueError as exc:
            raise integrity_failure(
                f"model '{name}' version {version}: {MANIFEST_FILE}: expected a valid manifest, got one "
                "that does not parse or validate",
                detail=f"{key}: {exc}",
            ) from None
        if (manifest.name, manifest.version) != (name, version):
            # A manifest copied between folders must not pass for another version.
            raise integrity_failure(
                f"model '{name}' version {version}: {MANIFEST_FILE}: expected the manifest of this version, "
                "got one describing another model or version",
                detail=f"{key} describes model {manifest.name!r} version {manifest.version}",
            )
        return manifest

    def signature_key(self, name: str, version: int) -> str:
        return self.version_prefix(name, version) + SIGNATURE_FILE

    def _verify_signature(self, name: str, version: int, body: bytes, signer: ManifestSigner) -> None:
        key = self.signature_key(name, version)
        try:
            with storage_errors(f"reading the manifest signature of model '{name}' version {version}"):
                signature = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except NotFound:
            raise IntegrityError(
                f"model '{name}' version {version}: {MANIFEST_FILE} is not signed, and "
                f"{ENV_MANIFEST_SIGNING} requires it"
            ) from None
        try:
            signer.verify(body, signature.decode("utf-8", errors="replace"))
        except IntegrityError as exc:
            raise integrity_failure(
                f"model '{name}' version {version}: {exc.message}", detail=f"{key}: {exc.detail}"
            ) from None

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
        if self.signer is not None and not self._put_new(
            self.signature_key(name, version), self.signer.sign(body).encode()
        ):
            raise VersionConflict(f"model '{name}' version {version}: manifest signature already exists")
        if not self._put_new(self.version_prefix(name, version) + MANIFEST_FILE, body):
            raise VersionConflict(f"model '{name}' version {version}: manifest already exists")
        return manifest

    def write_document(self, key: str, document: BaseModel, *, etag: str | None) -> str | None:
        """Compare-and-swap write: with `etag`, only over that exact object; without, only if absent.

        Returns the new ETag, or None when another writer got there first."""
        body = document.model_dump_json().encode()
        try:
            with storage_errors(f"writing s3://{self.bucket}/{key}"):
                if etag is None:
                    response = self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                else:
                    response = self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfMatch=etag)
        except PreconditionFailed:
            return None
        return response["ETag"]

    def delete_document(self, key: str, *, etag: str) -> bool:
        """Compare-and-swap delete: only the exact object read. False when it changed in between."""
        try:
            with storage_errors(f"deleting s3://{self.bucket}/{key}"):
                self._s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        except PreconditionFailed:
            return False
        return True

    def delete_keys(self, keys: list[str]) -> None:
        with storage_errors(f"deleting {len(keys)} objects from s3://{self.bucket}"):
            for start in range(0, len(keys), 1000):
                chunk: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys[start : start + 1000]]
                response = self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
                )
                # A multi-object delete answers 200 even when single keys fail; those must not pass silently.
                failed = response.get("Errors", [])
                if failed:
                    raise Unavailable(
                        f"deleting from s3://{self.bucket}: {len(failed)} objects failed "
                        f"({failed[0].get('Code', 'unknown error')})"
                    )

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
