"""Bring your own ONNX file: read its graph, find the external data it references beside it, check it
(onnx.checker, a session that opens, one run on inputs built from its signature) and publish it through its
own gate, which re-runs those checks on what it publishes.

The graph is read into memory (protobuf caps it at 2 GiB, and a large model's graph is kilobytes); the
external data never is. It is checked where it lies, with the weights memory-mapped, and handed to the
registry as paths, which streams them: a model of gigabytes publishes in bounded memory.

The manifest says what was not measured: `parity` is None and `params["source"]` is "byo-onnx".
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import onnx
import onnxruntime as ort

from maas.errors import InvalidInput
from maas.registry import Lineage, Manifest, ManifestDraft, ModelRegistry, Signature
from maas.registry.artifact_uploads import MAX_GRAPH_FILE_BYTES
from maas.registry.manifest import MANIFEST_FILE, MODEL_FILE, SAFE_RELATIVE_PATH, sha256_hex
from maas.runtime.loaded_model import zeros_like_spec
from maas.training.byo.foreign_code import user_code
from maas.training.card import CARD_FILE, render_report
from maas.training.errors import ModelCheckFailed
from maas.training.lineage import code_version, file_sha256, package_versions
from maas.training.onnx_checks import (
    check_onnx_file,
    external_data_locations,
    open_session_at,
    plain_file_inside,
    signature_of,
)
from maas.training.report import ModelReport

__all__ = ["SOURCE_ONNX", "ImportedModel", "import_onnx", "publish_imported"]

SOURCE_ONNX = "byo-onnx"
# Written beside the graph by the registry or the report, so a graph may not claim them for its data.
RESERVED_FILES = frozenset({MODEL_FILE, MANIFEST_FILE, CARD_FILE})
ONNX_PACKAGES = ("onnx", "onnxruntime")

_SAFE_PATH = re.compile(SAFE_RELATIVE_PATH)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What tells a file on disk changed: its size, modification time and inode (a replaced file)."""

    bytes: int
    modified_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        # lstat: a symlink put in the file's place is another file, never followed.
        status = os.lstat(path)
        if not stat.S_ISREG(status.st_mode):
            raise ModelCheckFailed(f"{path}: expected a plain file, got something else")
        return cls(status.st_size, status.st_mtime_ns, status.st_ino, status.st_dev)


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """An ONNX graph made outside maas, checked, with its card and the draft that describes it.

    `files` holds the graph's bytes (as checked), each external-data file's path (published streamed from
    disk, as it was when checked: `data_identities`) and the card. Publish it with `publish_imported`: it
    has no parity, so `publish_trained` would refuse it."""

    source: Path
    files: dict[str, bytes | Path]
    draft: ManifestDraft
    data_identities: Mapping[str, FileIdentity]

    @property
    def signature(self) -> Signature:
        return self.draft.signature


def import_onnx(path: Path, *, description: str = "", argument: str = "model") -> ImportedModel:
    """Read an ONNX graph, find the external-data files it references beside it, and check them.

    The external data to use comes from the graph itself, so nobody has to list it; each location must
    be a plain relative file inside the model's folder (no absolute path, no "..", no symlink). A graph
    file past protobuf's 2 GiB is refused before it is read: its weights belong in external data."""
    graph = _read_graph_file(path, argument)
    proto = _parse_onnx(graph, path)
    locations = external_data_locations(proto)
    data_paths = {location: _data_file_beside(path, location) for location in locations}
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
    del proto  # the graph's bytes are what is kept and published; a parsed copy would double them
    identities = {location: FileIdentity.of(data_path) for location, data_path in data_paths.items()}
    sha = sha256_hex(graph)
    signature = _verified_signature(path, sha, str(path))
    _ensure_unchanged(data_paths, identities, "while it was checked")
    params: dict[str, Any] = {"source": SOURCE_ONNX, "sha256": sha}
    if producer:
        params["producer"] = producer
    lineage = Lineage(
        recipe=SOURCE_ONNX, code_version=code_version(), packages=package_versions(ONNX_PACKAGES)
    )
    draft = ManifestDraft(
        task=None,
        description=description or f"An ONNX graph ({path.name}) made outside maas.",
        model_data_files=locations,
        signature=signature,
        params=params,
        lineage=lineage,
        parity=None,
    )
    data_description = f"Not known to maas: the graph was imported as a file with sha256 `{sha}`."
    limitations = (
        "Imported as ONNX, without a PyTorch reference: torch/onnxruntime parity was not measured. maas "
        "checked the graph with onnx.checker and ran it once on zero inputs built from its signature; it "
        "did not evaluate its predictions."
    )
    report = ModelReport.of_draft(
        path.name, draft, task="custom", data_description=data_description, limitations=limitations
    )
    files: dict[str, bytes | Path] = {MODEL_FILE: graph, **data_paths, **render_report(report)}
    return ImportedModel(source=path, files=files, draft=draft, data_identities=identities)


def publish_imported(imported: ImportedModel, registry: ModelRegistry, name: str) -> Manifest:
    """Publish an imported graph after re-running its checks on what is being published: the graph's own
    bytes, and its external data as the files on disk, unchanged since the import (same size, modification
    time and inode), checked again where they lie.

    This is the imported graph's gate in place of `ensure_publishable`: it cannot have parity, so what it
    must show is that it is valid ONNX, that its data is what it references, and that it runs."""
    draft = imported.draft
    if draft.params.get("source") != SOURCE_ONNX or draft.parity is not None:
        raise ModelCheckFailed(
            f"publish: expected an imported ONNX draft (source '{SOURCE_ONNX}', no parity), "
            f"got source {draft.params.get('source')!r}; publish a torch export with publish_trained"
        )
    label = str(imported.source)
    graph = imported.files[draft.model_file]
    if not isinstance(graph, bytes):
        raise ModelCheckFailed(f"{label}: expected the imported graph's bytes, got a path ({graph})")
    digest = sha256_hex(graph)
    if digest != draft.params.get("sha256"):
        raise ModelCheckFailed(
            f"{label}: expected the graph imported with sha256 {draft.params.get('sha256')}, got {digest}"
        )
    locations = external_data_locations(_parse_onnx(graph, imported.source))
    if locations != draft.model_data_files:
        raise ModelCheckFailed(
            f"{label}: external data: expected {draft.model_data_files} as checked at import, got {locations}"
        )
    data_paths = {location: _data_file_beside(imported.source, location) for location in locations}
    for location, data_path in data_paths.items():
        if imported.files.get(location) != data_path:
            raise ModelCheckFailed(
                f"{label}: external data {location!r}: expected the file checked at import ({data_path}), "
                f"got {_shown(imported.files.get(location))}"
            )
    _ensure_unchanged(data_paths, imported.data_identities, "since it was imported")
    signature = _verified_signature(imported.source, digest, label)
    if signature != draft.signature:
        raise ModelCheckFailed(
            f"{label}: signature: expected {draft.signature.model_dump()} as checked at import, "
            f"got {signature.model_dump()}"
        )
    _ensure_unchanged(data_paths, imported.data_identities, "since it was imported")
    return registry.publish(name, imported.files, draft)


def _read_graph_file(path: Path, argument: str) -> bytes:
    if not path.is_file():
        raise InvalidInput(f"{argument}: expected an ONNX file at {path}, found none")
    size = path.stat().st_size
    if size > MAX_GRAPH_FILE_BYTES:
        raise InvalidInput(
            f"{argument}: expected an ONNX graph file of at most 2 GiB ({MAX_GRAPH_FILE_BYTES:,} bytes, "
            f"protobuf's limit), got {size:,} bytes at {path}; save the weights as external data beside it, "
            "e.g. onnx.save_model(model, path, save_as_external_data=True, location='model.onnx.data')"
        )
    return path.read_bytes()


def _parse_onnx(data: bytes, path: Path) -> onnx.ModelProto:
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:
        # Arbitrary bytes fail inside protobuf in more ways than one exception type names.
        raise ModelCheckFailed(
            f"{path}: expected an ONNX model (a serialized ModelProto), got bytes that do not parse "
            f"({type(exc).__name__})"
        ) from None
    # Protobuf parses many byte strings into an empty or partial message; a model has both of these.
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.node:
        raise ModelCheckFailed(
            f"{path}: expected an ONNX model with an ir_version and a graph of nodes, got {len(data)} bytes "
            "that are not one"
        )
    return proto


def _data_file_beside(model_path: Path, location: str) -> Path:
    """One external-data file's path, refused unless it is a plain file inside the model's folder."""

    def refuse(why: str) -> ModelCheckFailed:
        return ModelCheckFailed(
            f"{model_path}: external data location {location!r}: expected a relative file beside the model, "
            f"got {why}"
        )

    if not location:
        raise refuse("an empty location")
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or location[0] in "/\\"
    ):
        raise refuse("an absolute path")
    if ".." in re.split(r"[/\\]", location):
        raise refuse("a path with '..'")
    if not _SAFE_PATH.fullmatch(location):
        raise refuse("a name the registry cannot store (letters, digits, '_', '-' and '.' per segment)")
    if location in RESERVED_FILES:
        raise refuse(f"a name reserved for the version's own files {sorted(RESERVED_FILES)}")
    return plain_file_inside(model_path.parent, location, refuse)


def _verified_signature(path: Path, graph_sha256: str, label: str) -> Signature:
    """onnx.checker, a session that opens and one run on inputs built from the graph's signature, all on
    the graph file at `path` with its external data beside it, which must still be the graph whose sha256
    was taken (the bytes that are published).

    The session keeps the weights memory-mapped: the check asks whether the graph opens and runs, not how
    fast, and a packed copy would hold as much private memory as the weights (GBs for a large model)."""
    with _labelled(label):
        check_onnx_file(path)
    with user_code(f"{label}: opening an onnxruntime session"):
        session = open_session_at(path, mapped=True)
    with _labelled(label):
        signature = signature_of(session)
    _run_once(session, signature, label)
    del session  # unmaps the weights before anything else runs
    if file_sha256(path) != graph_sha256:
        raise ModelCheckFailed(f"{label}: expected the graph file to stay as it was read, it changed since")
    return signature


def _ensure_unchanged(paths: Mapping[str, Path], identities: Mapping[str, FileIdentity], when: str) -> None:
    for location, data_path in paths.items():
        if FileIdentity.of(data_path) != identities[location]:
            raise ModelCheckFailed(
                f"{data_path}: expected the external data {location!r} unchanged {when} (size, modification "
                "time, inode), got a different file; import it again"
            )


def _shown(value: bytes | Path | None) -> str:
    if value is None:
        return "none"
    return f"{len(value):,} bytes" if isinstance(value, bytes) else str(value)


def _run_once(session: ort.InferenceSession, signature: Signature, label: str) -> None:
    feeds = {spec.name: zeros_like_spec(spec) for spec in signature.inputs}
    shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())
    with user_code(f"{label}: running the graph once on zero inputs ({shapes})"):
        results = session.run(None, feeds)
    if len(results) != len(signature.outputs):
        raise ModelCheckFailed(
            f"{label}: expected {len(signature.outputs)} outputs from one run, got {len(results)}"
        )


@contextmanager
def _labelled(label: str) -> Iterator[None]:
    """Name the user's file in a check that only knows it as model.onnx."""
    try:
        yield
    except ModelCheckFailed as exc:
        raise ModelCheckFailed(f"{label}: {exc.message}") from None
