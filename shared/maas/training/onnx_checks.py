"""The checks every graph passes before it is published (onnx.checker, an onnxruntime session, its signature),
and reading the files a tool wrote. No torch: `maas publish` of an ONNX file runs these without it.

Two ways in: files held as bytes (an export, a quantized graph), materialised in a temporary directory exactly
as the runtime will see them; or a graph already on disk with its external data beside it, checked where it
lies, so a model of gigabytes is never copied or read into memory to be checked.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import onnx
import onnxruntime as ort
from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

from maas.errors import IntegrityError
from maas.registry import Signature
from maas.registry.manifest import MODEL_FILE
from maas.runtime import signature_of as runtime_signature_of
from maas.runtime import write_model_files
from maas.training.errors import ModelCheckFailed

CPU_PROVIDER = "CPUExecutionProvider"
# onnxruntime's switch for keeping initializers where they are loaded (memory-mapped external data) instead
# of packing a private copy of each weight for the kernels.
DISABLE_PREPACKING = "session.disable_prepacking"
_ORT_ERRORS_ONLY = 3


def read_folder_files(folder: Path) -> dict[str, bytes]:
    """Every file directly in `folder` (an exporter's or quantizer's output), keyed by name.

    A symlink is refused rather than followed: what gets published must be what the tool wrote there."""

    def refuse(why: str) -> ModelCheckFailed:
        return ModelCheckFailed(f"{folder}: expected only plain files written there, got {why}")

    return {
        path.name: read_file_inside(folder, path.name, refuse)
        for path in sorted(folder.iterdir())
        if path.is_symlink() or path.is_file()
    }


def plain_file_inside(folder: Path, relative: str, refuse: Callable[[str], Exception]) -> Path:
    """The path of the plain file at `relative` under `folder`, or `refuse(why)` raised when any step of the
    way is a symlink, it resolves outside the folder, or it is not a file: a model folder cannot pull in
    files from elsewhere on the machine."""
    candidate = folder
    for part in PurePosixPath(relative).parts:
        candidate = candidate / part
        if candidate.is_symlink():
            raise refuse(f"a symlink at {candidate}")
    if not candidate.resolve().is_relative_to(folder.resolve()):
        raise refuse("a path that resolves outside the model's folder")
    if not candidate.is_file():
        raise refuse(f"no file at {candidate}")
    return candidate


def read_file_inside(folder: Path, relative: str, refuse: Callable[[str], Exception]) -> bytes:
    """The bytes of `plain_file_inside(folder, relative, refuse)`."""
    candidate = plain_file_inside(folder, relative, refuse)
    # O_NOFOLLOW: a symlink swapped in after the checks above is still refused.
    try:
        descriptor = os.open(candidate, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise refuse(f"a file that cannot be opened ({exc.strerror})") from None
    with os.fdopen(descriptor, "rb") as stream:
        return stream.read()


def check_onnx(files: Mapping[str, bytes], model_file: str = MODEL_FILE) -> None:
    """onnx.checker on the model as stored; a path (not a proto) lets it follow external data."""
    with materialized(files) as directory:
        check_onnx_file(directory / model_file, model_file)


def check_onnx_file(path: Path, label: str | None = None) -> None:
    """onnx.checker on the graph at `path`, its external data beside it. From a path the checker reads the
    graph alone and checks each external tensor's location, never the weights: a proto holding them could
    not pass protobuf's 2 GiB, so `check_model(proto)` fails on exactly the models that need external data."""
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ModelCheckFailed(f"onnx.checker rejected '{label or path.name}': {exc}") from None


def external_data_locations(model: onnx.ModelProto) -> list[str]:
    """The files the graph's tensors keep their data in, sorted, each once."""
    return sorted(
        {
            ExternalDataInfo(tensor).location
            for tensor in _get_all_tensors(model)
            if uses_external_data(tensor)
        }
    )


def external_data_files(files: Mapping[str, bytes], model_file: str = MODEL_FILE) -> list[str]:
    """Every external-data location the graph references, each required to be one of the files.

    The runtime opens the graph beside exactly these verified files, so a location outside them would
    either fail to load or, worse, read weights no checksum covers."""
    with materialized({model_file: files[model_file]}) as directory:
        model = onnx.load(str(directory / model_file), load_external_data=False)
    locations = external_data_locations(model)
    missing = [location for location in locations if location not in files]
    if missing:
        raise ModelCheckFailed(
            f"external data: expected {missing} among the exported files, got {sorted(files)}"
        )
    return locations


def open_session(
    files: Mapping[str, bytes], model_file: str = MODEL_FILE, *, threads: int | None = None
) -> ort.InferenceSession:
    """A CPU onnxruntime session over the files, opened from a directory as the runtime opens them."""
    with materialized(files) as directory:
        return open_session_at(directory / model_file, threads=threads)


def open_session_at(path: Path, *, mapped: bool = False, threads: int | None = None) -> ort.InferenceSession:
    """A CPU onnxruntime session on the graph at `path`. `mapped`: the weights stay in the memory-mapped
    external data (file-backed pages the kernel can drop and read again) instead of a private packed copy
    as large as the weights. `threads`: intra-op threads (None: onnxruntime's default, one per core)."""
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    if threads is not None:
        options.intra_op_num_threads = threads
    if mapped:
        options.add_session_config_entry(DISABLE_PREPACKING, "1")
    return ort.InferenceSession(str(path), options, providers=[CPU_PROVIDER])


def signature_of(session: ort.InferenceSession) -> Signature:
    """Read the signature from the ONNX graph itself, so the manifest can never disagree with the model."""
    try:
        return runtime_signature_of(session)
    except IntegrityError as exc:
        raise ModelCheckFailed(f"signature: {exc}") from None


@contextmanager
def materialized(files: Mapping[str, bytes]) -> Iterator[Path]:
    """Write the files into a temporary directory, which is removed on exit."""
    with tempfile.TemporaryDirectory(prefix="maas-model-") as tmp:
        directory = Path(tmp)
        write_model_files(directory, files)
        yield directory
