"""A trained model's files on disk, as `maas train --out` writes them or a failed publish keeps them, and
publishing such a folder later with the same gates: `maas publish DIR --name NAME`.

A folder holds the files to publish (model.onnx, its external data, card.md, ...) and draft.json, the
manifest draft they were checked with; a quantized version made from the same run sits in `int8/` inside it.
Nothing but the CLI decides where the folder goes (see maas.cli.training), so this module never looks for
the local stack's data folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maas.registry import Manifest, ManifestDraft, ModelRegistry

DRAFT_FILE = "draft.json"
INT8_FOLDER = "int8"
UNPUBLISHED_FOLDER = "unpublished"


@dataclass(frozen=True, slots=True)
class PublishedRun:
    """What publishing a saved folder made: its version, and the int8 one made from it, if any."""

    manifest: Manifest
    int8: Manifest | None = None


def write_run(folder: Path, files: Mapping[str, bytes], draft: ManifestDraft) -> Path:
    """The files and draft.json in `folder` (created with its parents); returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / DRAFT_FILE).write_text(draft.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return folder


def unpublished_folder(data_folder: Path, name: str, now: datetime) -> Path:
    """A fresh folder for a run whose publish failed: `<data folder>/unpublished/<name>-<UTC time>`."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    folder = data_folder / UNPUBLISHED_FOLDER / f"{name}-{stamp}"
    suffix = 1
    while folder.exists():  # two failures in one second keep both
        suffix += 1
        folder = data_folder / UNPUBLISHED_FOLDER / f"{name}-{stamp}-{suffix}"
    return folder


def is_saved_run(path: Path) -> bool:
    return path.is_dir() and (path / DRAFT_FILE).is_file()


def read_run(folder: Path) -> tuple[dict[str, bytes], ManifestDraft]:
    """The files and draft of a saved folder, checked again: the graph opens and its signature is the one
    the draft describes, so a folder edited since it was written is refused rather than published."""
    from pydantic import ValidationError

    from maas.errors import InvalidInput
    from maas.registry import ManifestDraft
    from maas.training.errors import ModelCheckFailed
    from maas.training.onnx_checks import check_onnx, open_session, read_folder_files, signature_of

    draft_path = folder / DRAFT_FILE
    try:
        draft = ManifestDraft.model_validate_json(draft_path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise InvalidInput(
            f"{draft_path}: expected the draft `maas train --out` writes, got one that cannot be read "
            f"({type(exc).__name__})"
        ) from None
    files = {name: data for name, data in read_folder_files(folder).items() if name != DRAFT_FILE}
    if draft.model_file not in files:
        raise InvalidInput(f"{folder}: expected {draft.model_file} beside {DRAFT_FILE}, found none")
    check_onnx(files, draft.model_file)
    found = signature_of(open_session(files, draft.model_file))
    if found != draft.signature:
        raise ModelCheckFailed(
            f"{folder / draft.model_file}: expected the signature {DRAFT_FILE} records, got another one; "
            "the folder changed since it was written"
        )
    return files, draft


def publish_run(folder: Path, registry: ModelRegistry, name: str) -> PublishedRun:
    """Publish a saved folder under `name` through the same gates as `maas train`, then its int8 version,
    if the folder holds one, recording the fp32 version it was made from."""
    from maas.training.publish_gates import ensure_publishable

    files, draft = read_run(folder)
    int8_folder = folder / INT8_FOLDER
    int8 = read_run(int8_folder) if is_saved_run(int8_folder) else None
    # Every gate before any write, as train does: a refused int8 publishes nothing.
    ensure_publishable(draft)
    if int8 is not None:
        ensure_publishable(int8[1])
    manifest = registry.publish(name, files, draft)
    if int8 is None:
        return PublishedRun(manifest)
    int8_files, int8_draft = int8
    quantization = int8_draft.quantization
    if quantization is not None and quantization.base_version is None:
        update = {"quantization": quantization.model_copy(update={"base_version": manifest.version})}
        int8_draft = int8_draft.model_copy(update=update)
    return PublishedRun(manifest, registry.publish(name, int8_files, int8_draft))
