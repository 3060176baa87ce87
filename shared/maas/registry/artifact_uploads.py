"""Artifacts into a version folder: what a publisher hands over, checked before anything is written, and
each file's create-only upload.

bytes are written as they always were: one create-only PUT. A file (a Path) is streamed from disk once: the
same read feeds the whole-file sha256, each part's sha256 and the multipart upload whose parts go up in
parallel, each with its ChecksumSHA256, so S3 verifies and keeps the checksums the manifest lists. Only
`concurrency` parts are in flight at a time: a 3 GB file is never held in memory. A file that fits one part
is one create-only PUT and lists no parts.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from maas.errors import InvalidInput
from maas.objects import DEFAULT_PART_BYTES, PartsUpload, part_bytes_for, put_new
from maas.registry.manifest import (
    SAFE_RELATIVE_PATH,
    Artifact,
    ArtifactParts,
    ManifestDraft,
    describe_artifact,
)
from maas.registry.onnx_graph_file import vet_graph_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# protobuf refuses to parse a message of 2 GiB or more (2**31 - 1 bytes is its limit), so no runtime can open
# a larger graph file: the weights belong in external data beside it.
MAX_GRAPH_FILE_BYTES = 2 * 1024**3 - 1
# Parts in flight per file (ADR 0021): 8 parts of 8 MiB keep a publish near 100 MB above the process's own
# size whatever the file's, and at S3's ~88 MB/s per request 8 already outrun most uplinks.
UPLOAD_CONCURRENCY = 8
ARTIFACT_CONTENT_TYPE = "application/octet-stream"
ARTIFACT_PATH = re.compile(SAFE_RELATIVE_PATH)
# The registry function may write models/*/aliases/* and models/*/meta/*, and an IAM '*' also matches '/':
# no artifact may sit under a folder of those names, or that role could rewrite an immutable version.
RESERVED_ARTIFACT_FOLDERS = frozenset({"aliases", "meta"})


@dataclass(frozen=True, slots=True)
class StreamedFile:
    """A file uploaded by streaming: its size, known before the upload starts, and how to read it."""

    size: int
    open: Callable[[], BinaryIO]


ArtifactSource = bytes | StreamedFile


def artifact_sources(
    name: str, files: Mapping[str, bytes | Path], draft: ManifestDraft, *, registry_files: Collection[str]
) -> dict[str, ArtifactSource]:
    """Each artifact's source, with the graph file vetted from its bytes: refused (InvalidInput) before
    anything is uploaded when a path is unsafe or one of `registry_files`, a file is missing, or the graph
    is over 2 GiB, not a ModelProto, or reads external data outside its version."""
    for required in (draft.model_file, *draft.model_data_files):
        if required not in files:
            raise InvalidInput(f"publish: expected the graph file '{required}' among the artifacts")
    for path in files:
        if path in registry_files or not ARTIFACT_PATH.match(path):
            raise InvalidInput(f"publish: artifact path {path!r} is not a safe relative path")
        if RESERVED_ARTIFACT_FOLDERS.intersection(path.split("/")[:-1]):
            raise InvalidInput(
                f"publish: artifact path {path!r}: expected no folder named "
                f"{' or '.join(sorted(RESERVED_ARTIFACT_FOLDERS))}, reserved for the registry's documents"
            )
    what = f"publish: graph file '{draft.model_file}' of model '{name}'"
    sources: dict[str, ArtifactSource] = {}
    for path, source in files.items():
        if isinstance(source, Path):
            size = _file_size(source, f"publish: artifact '{path}' of model '{name}'")
            sources[path] = StreamedFile(size, _opener(source))
        else:
            size = len(source)
            sources[path] = source
        if path == draft.model_file and size > MAX_GRAPH_FILE_BYTES:
            raise InvalidInput(
                f"{what}: expected at most 2 GiB ({MAX_GRAPH_FILE_BYTES} bytes, protobuf's limit), got "
                f"{size} bytes ({size / 1024**3:.2f} GiB); save the weights as ONNX external data "
                "(onnx.save_model(..., save_as_external_data=True)) and publish the .data file beside it"
            )
    graph = files[draft.model_file]
    # Read once: the bytes vetted are the bytes uploaded.
    graph_bytes = graph.read_bytes() if isinstance(graph, Path) else graph
    vet_graph_file(graph_bytes, data_files=draft.model_data_files, what=what, error=InvalidInput)
    if isinstance(graph, Path):
        sources[draft.model_file] = StreamedFile(len(graph_bytes), lambda: io.BytesIO(graph_bytes))
    return sources


def upload_artifact(
    s3: S3Client,
    bucket: str,
    key: str,
    path: str,
    source: ArtifactSource,
    *,
    part_bytes: int = DEFAULT_PART_BYTES,
    concurrency: int = UPLOAD_CONCURRENCY,
) -> Artifact | None:
    """Write one artifact create-only at `key`; its manifest entry, or None when the key already existed."""
    if not isinstance(source, StreamedFile):
        artifact = describe_artifact(path, source)
        return artifact if put_new(s3, bucket, key, source, ARTIFACT_CONTENT_TYPE) else None
    part_bytes = part_bytes_for(source.size, part_bytes)
    whole = hashlib.sha256()
    with source.open() as stream:
        if source.size <= part_bytes:
            data = _read_exactly(stream, source.size, path)
            whole.update(data)
            created = put_new(s3, bucket, key, data, ARTIFACT_CONTENT_TYPE, sha256=whole.digest())
            return Artifact(path=path, sha256=whole.hexdigest(), bytes=source.size) if created else None
        parts = PartsUpload(
            s3, bucket, key, content_type=ARTIFACT_CONTENT_TYPE, concurrency=concurrency, checksums=True
        )
        try:
            for offset in range(0, source.size, part_bytes):
                body = _read_exactly(stream, min(part_bytes, source.size - offset), path)
                whole.update(body)
                parts.send(body)
            if stream.read(1):
                raise _changed_while_read(path)
            created = parts.complete()
        except BaseException:
            parts.abort()
            raise
    if not created:
        return None
    listed = ArtifactParts(bytes=part_bytes, sha256=parts.part_sha256)
    return Artifact(path=path, sha256=whole.hexdigest(), bytes=source.size, parts=listed)


def _opener(source: Path) -> Callable[[], BinaryIO]:
    return lambda: source.open("rb")


def _file_size(source: Path, what: str) -> int:
    try:
        stat = source.stat()
    except OSError as exc:
        raise InvalidInput(
            f"{what}: expected a readable file, got {type(exc).__name__} for {source}"
        ) from None
    if not source.is_file():
        raise InvalidInput(f"{what}: expected a regular file, got something else at {source}")
    return stat.st_size


def _read_exactly(stream: BinaryIO, size: int, path: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _changed_while_read(path)
    return data


def _changed_while_read(path: str) -> InvalidInput:
    return InvalidInput(
        f"publish: artifact '{path}': expected the file to keep its size while it was uploaded, got a file "
        "that changed; nothing was committed"
    )
