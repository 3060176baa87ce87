"""Bring your own ONNX file: read it and the external data its graph references beside it, check it
(onnx.checker, a session that opens, one run on inputs built from its signature) and publish it through its
own gate, which re-runs those checks on the exact bytes it publishes.

The manifest says what was not measured: `parity` is None and `params["source"]` is "byo-onnx".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import onnx
import onnxruntime as ort
from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

from maas.errors import InvalidInput
from maas.registry import Lineage, Manifest, ManifestDraft, ModelRegistry, Signature
from maas.registry.manifest import MANIFEST_FILE, MODEL_FILE, SAFE_RELATIVE_PATH, sha256_hex
from maas.runtime.loaded_model import zeros_like_spec
from maas.training.byo.foreign_code import user_code
from maas.training.card import CARD_FILE, render_report
from maas.training.errors import ModelCheckFailed
from maas.training.export import check_onnx, external_data_files, open_session, read_file_inside, signature_of
from maas.training.lineage import code_version, package_versions
from maas.training.report import ModelReport

__all__ = ["SOURCE_ONNX", "ImportedModel", "import_onnx", "publish_imported"]

SOURCE_ONNX = "byo-onnx"
# Written beside the graph by the registry or the report, so a graph may not claim them for its data.
RESERVED_FILES = frozenset({MODEL_FILE, MANIFEST_FILE, CARD_FILE})
ONNX_PACKAGES = ("onnx", "onnxruntime")

_SAFE_PATH = re.compile(SAFE_RELATIVE_PATH)


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """An ONNX graph made outside maas, checked, with its card and the draft that describes it.

    Publish it with `publish_imported`: it has no parity, so `publish_trained` would refuse it."""

    source: Path
    files: dict[str, bytes]
    draft: ManifestDraft

    @property
    def signature(self) -> Signature:
        return self.draft.signature


def import_onnx(path: Path, *, description: str = "", argument: str = "model") -> ImportedModel:
    """Read an ONNX file and the external-data files its graph references beside it, and check them.

    The external data to read comes from the graph itself, so nobody has to list it; each location must
    be a plain relative file inside the model's folder (no absolute path, no "..", no symlink)."""
    model_bytes = _read_model_file(path, argument)
    proto = _parse_onnx(model_bytes, path)
    locations = _external_locations(proto)
    files = {MODEL_FILE: model_bytes}
    for location in locations:
        files[location] = _read_beside(path, location)
    signature = _verified_signature(files, str(path))
    sha = sha256_hex(model_bytes)
    params: dict[str, Any] = {"source": SOURCE_ONNX, "sha256": sha}
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
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
    files.update(render_report(report))
    return ImportedModel(source=path, files=files, draft=draft)


def publish_imported(imported: ImportedModel, registry: ModelRegistry, name: str) -> Manifest:
    """Publish an imported graph after re-running its checks on the exact bytes being published.

    This is the imported graph's gate in place of `ensure_publishable`: it cannot have parity, so what it
    must show is that it is valid ONNX, that its data is what it references, and that it runs."""
    draft = imported.draft
    if draft.params.get("source") != SOURCE_ONNX or draft.parity is not None:
        raise ModelCheckFailed(
            f"publish: expected an imported ONNX draft (source '{SOURCE_ONNX}', no parity), "
            f"got source {draft.params.get('source')!r}; publish a torch export with publish_trained"
        )
    label = str(imported.source)
    digest = sha256_hex(imported.files[draft.model_file])
    if digest != draft.params.get("sha256"):
        raise ModelCheckFailed(
            f"{label}: expected the graph imported with sha256 {draft.params.get('sha256')}, got {digest}"
        )
    locations = external_data_files(imported.files)
    if locations != draft.model_data_files:
        raise ModelCheckFailed(
            f"{label}: external data: expected {draft.model_data_files} as checked at import, got {locations}"
        )
    signature = _verified_signature(imported.files, label)
    if signature != draft.signature:
        raise ModelCheckFailed(
            f"{label}: signature: expected {draft.signature.model_dump()} as checked at import, "
            f"got {signature.model_dump()}"
        )
    return registry.publish(name, imported.files, draft)


def _read_model_file(path: Path, argument: str) -> bytes:
    if not path.is_file():
        raise InvalidInput(f"{argument}: expected an ONNX file at {path}, found none")
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


def _external_locations(proto: onnx.ModelProto) -> list[str]:
    return sorted(
        {
            ExternalDataInfo(tensor).location
            for tensor in _get_all_tensors(proto)
            if uses_external_data(tensor)
        }
    )


def _read_beside(model_path: Path, location: str) -> bytes:
    """One external-data file, refused unless it is a plain file inside the model's folder."""

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
    return read_file_inside(model_path.parent, location, refuse)


def _verified_signature(files: Mapping[str, bytes], label: str) -> Signature:
    """onnx.checker, a session that opens and one run on inputs built from the graph's signature."""
    with _labelled(label):
        external_data_files(files)
        check_onnx(files)
    with user_code(f"{label}: opening an onnxruntime session"):
        session = open_session(files)
    with _labelled(label):
        signature = signature_of(session)
    _run_once(session, signature, label)
    return signature


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
