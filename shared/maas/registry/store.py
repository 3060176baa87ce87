"""The model registry: versions, aliases and artifacts in S3, with no database.

Layout under the configured prefix:
    models/<name>/versions/<n>/<artifact>        written create-only (If-None-Match: *)
    models/<name>/versions/<n>/manifest.json     written last: the commit point
    models/<name>/aliases/<alias>.json           {"version": n}, moved with If-Match
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from maas.errors import IntegrityError, InvalidInput, MaasError, NotFound, Unavailable
from maas.registry.manifest import (
    HASH_CHUNK_BYTES,
    MANIFEST_FILE,
    SAFE_RELATIVE_PATH,
    Artifact,
    Manifest,
    ManifestDraft,
    describe_artifact,
)
from maas.registry.references import LATEST, ModelRef, validate_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARTIFACT_PATH = re.compile(SAFE_RELATIVE_PATH)
MAX_VERSION_CLAIM_ATTEMPTS = 20
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


class VersionConflict(MaasError):
    """A create-only or compare-and-swap write lost a race. HTTP 409."""

    status = 409


@dataclass(frozen=True, slots=True)
class AliasTarget:
    version: int
    etag: str


class ModelRegistry:
    """Reads and writes the registry layout. The S3 client is injected, so tests point it at moto."""

    def __init__(
        self, s3: S3Client, bucket: str, *, prefix: str = "", default_alias: str = "production"
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.default_alias = default_alias

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
        with _storage(f"listing models in s3://{self.bucket}/{prefix}"):
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
        with _storage(f"listing versions of model '{name}'"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    folder, _, file = item["Key"][len(prefix) :].partition("/")
                    if file == MANIFEST_FILE and folder.isdigit():
                        found.append(int(folder))
        return sorted(found)

    def latest_version(self, name: str) -> int:
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"model '{name}': not found (no published version)")
        return versions[-1]

    def alias_target(self, name: str, alias: str) -> AliasTarget | None:
        key = self.alias_key(name, alias)
        try:
            with _storage(f"reading alias '{name}@{alias}'"):
                response = self._s3.get_object(Bucket=self.bucket, Key=key)
                document = json.loads(response["Body"].read())
                return AliasTarget(version=int(document["version"]), etag=response["ETag"])
        except NotFound:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"alias '{name}@{alias}': expected {{\"version\": <int>}}, got {exc}"
            ) from None

    def check_reachable(self) -> None:
        """Raise Unavailable unless the models prefix can be listed (the permission readers already have)."""
        try:
            with _storage(f"reaching s3://{self.bucket}/{self.prefix}models/"):
                self._s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}models/", MaxKeys=1)
        except NotFound:
            raise Unavailable(f"bucket '{self.bucket}': not found") from None

    def resolve(self, ref: ModelRef) -> int:
        """Turn a reference into a committed version number."""
        validate_name(ref.name)
        if ref.version is not None:
            if not self._manifest_exists(ref.name, ref.version):
                raise NotFound(f"model '{ref.name}' version {ref.version}: not found")
            return ref.version
        if ref.alias == LATEST:
            return self.latest_version(ref.name)
        alias = ref.alias or self.default_alias
        target = self.alias_target(ref.name, alias)
        if target is not None:
            return target.version
        if ref.alias is None:
            return self.latest_version(ref.name)
        raise NotFound(f"model '{ref.name}': alias '{alias}' is not set")

    def manifest(self, name: str, version: int) -> Manifest:
        key = self.version_prefix(name, version) + MANIFEST_FILE
        with _storage(f"reading the manifest of model '{name}' version {version}"):
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            manifest = Manifest.model_validate_json(body)
        except ValueError as exc:
            raise IntegrityError(
                f"manifest of model '{name}' version {version} is not valid: {exc}"
            ) from None
        if (manifest.name, manifest.version) != (name, version):
            # A manifest copied between folders must not pass for another version.
            raise IntegrityError(
                f"manifest at model '{name}' version {version} describes model '{manifest.name}' "
                f"version {manifest.version}"
            )
        return manifest

    def read_artifact(self, manifest: Manifest, artifact: Artifact) -> bytes:
        """Fetch one artifact, verifying its size and sha256 against the manifest as it streams."""
        key = self.version_prefix(manifest.name, manifest.version) + artifact.path
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        with _storage(f"reading artifact '{artifact.path}' of model '{manifest.name}' v{manifest.version}"):
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(HASH_CHUNK_BYTES):
                digest.update(chunk)
                chunks.append(chunk)
        data = b"".join(chunks)
        if len(data) != artifact.bytes or digest.hexdigest() != artifact.sha256:
            raise IntegrityError(
                f"artifact '{artifact.path}' of model '{manifest.name}' v{manifest.version}: expected "
                "the sha256 and size in its manifest, got different content; refusing to load it"
            )
        return data

    # ---- writing

    def publish(self, name: str, files: Mapping[str, bytes], draft: ManifestDraft) -> Manifest:
        """Publish an immutable version; returns the committed manifest.

        The first artifact's create-only write claims the version number, so two concurrent publishers
        never share one; the loser moves on to the next number. The manifest is written last.
        """
        validate_name(name)
        for required in (draft.model_file, *draft.model_data_files):
            if required not in files:
                raise InvalidInput(f"publish: expected the graph file '{required}' among the artifacts")
        for path in files:
            if path == MANIFEST_FILE or not ARTIFACT_PATH.match(path):
                raise InvalidInput(f"publish: artifact path {path!r} is not a safe relative path")
        ordered = [draft.model_file, *sorted(p for p in files if p != draft.model_file)]
        artifacts = [describe_artifact(path, files[path]) for path in ordered]

        version = self._next_version_number(name)
        for _ in range(MAX_VERSION_CLAIM_ATTEMPTS):
            if self._put_new(self.version_prefix(name, version) + ordered[0], files[ordered[0]]):
                break
            version += 1
        else:
            raise VersionConflict(
                f"model '{name}': could not claim a version after many concurrent publishes"
            )

        prefix = self.version_prefix(name, version)
        for path in ordered[1:]:
            if not self._put_new(prefix + path, files[path]):
                raise VersionConflict(f"model '{name}' version {version}: artifact '{path}' already exists")
        manifest = draft.commit(name, version, artifacts)
        if not self._put_new(prefix + MANIFEST_FILE, manifest.model_dump_json(indent=2).encode()):
            raise VersionConflict(f"model '{name}' version {version}: manifest already exists")
        return manifest

    def set_alias(
        self, name: str, alias: str, version: int, *, expected: AliasTarget | None = None
    ) -> AliasTarget:
        """Point an alias at a committed version by compare-and-swap.

        With `expected`, the write succeeds only if the alias still has that ETag; without it, only if the
        alias does not exist yet. A lost race raises VersionConflict, so no update is silently lost.
        """
        validate_name(name)
        validate_name(alias, field="alias")
        if alias == LATEST:
            raise InvalidInput("alias: 'latest' is reserved for the newest version and cannot be set")
        if not self._manifest_exists(name, version):
            raise NotFound(f"model '{name}' version {version}: not found")
        document = {"version": version, "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        body = json.dumps(document).encode()
        key = self.alias_key(name, alias)
        try:
            with _storage(f"moving alias '{name}@{alias}'"):
                if expected is None:
                    response = self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                else:
                    response = self._s3.put_object(
                        Bucket=self.bucket, Key=key, Body=body, IfMatch=expected.etag
                    )
        except _PreconditionFailed:
            raise VersionConflict(
                f"alias '{name}@{alias}' was moved concurrently; re-read it and retry"
            ) from None
        return AliasTarget(version=version, etag=response["ETag"])

    # ---- helpers

    def _manifest_exists(self, name: str, version: int) -> bool:
        try:
            with _storage(f"checking model '{name}' version {version}"):
                self._s3.head_object(
                    Bucket=self.bucket, Key=self.version_prefix(name, version) + MANIFEST_FILE
                )
        except NotFound:
            return False
        return True

    def _next_version_number(self, name: str) -> int:
        # Every claimed folder counts, committed or not, so an abandoned upload's number is never reused.
        prefix = f"{self.model_prefix(name)}versions/"
        highest = 0
        with _storage(f"listing version folders of model '{name}'"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    folder = common["Prefix"][len(prefix) :].rstrip("/")
                    if folder.isdigit():
                        highest = max(highest, int(folder))
        return highest + 1

    def _put_new(self, key: str, data: bytes) -> bool:
        """Create-only write. False when the key already exists."""
        try:
            with _storage(f"writing s3://{self.bucket}/{key}"):
                self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        except _PreconditionFailed:
            return False
        return True


class _PreconditionFailed(Exception):
    pass


@contextmanager
def _storage(action: str) -> Iterator[None]:
    """Translate boto errors once: missing keys to NotFound, lost conditions to _PreconditionFailed,
    anything else to Unavailable (503), since the client did nothing wrong."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            raise NotFound(f"{action}: not found") from None
        if code in _PRECONDITION_CODES:
            raise _PreconditionFailed from None
        if code == "NoSuchBucket":
            raise Unavailable(f"{action}: the bucket does not exist") from None
        raise Unavailable(f"{action}: storage error {code}") from None
    except BotoCoreError as exc:
        raise Unavailable(f"{action}: storage unreachable ({type(exc).__name__})") from None
