"""Opening a version's graph in an onnxruntime session, from files whose sha256 matched the manifest.

The session always opens from a fresh private folder holding only verified files (decision 0006): opened
from bytes, onnxruntime would resolve a graph's external-data references against the working directory,
reading weights no checksum covers. Each file is downloaded straight into it and verified as it lands
(decision 0021). The folder goes once the session exists, and with it every file a failed download or check
left behind. Files the session maps stay allocated until the session goes
(decision 0022): its footprint records how many bytes, so the temp-space budget counts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnxruntime as ort

from maas.config import ENV_PROVIDER
from maas.errors import IntegrityError, Unavailable
from maas.registry.manifest import Manifest
from maas.registry.onnx_graph_file import vet_graph_file
from maas.registry.store import ModelRegistry
from maas.runtime.footprint import Footprint, record_footprint
from maas.runtime.load_folders import private_load_folder
from maas.runtime.memory import release_freed_memory
from maas.runtime.process_memory import mapped_file_bytes, resident_bytes
from maas.runtime.session_options import SessionConfig
from maas.runtime.weights import graph_bytes, weight_loading_of


def private_folder_prefix(manifest: Manifest) -> str:
    """How a load's private folder in the temp dir is named: `maas-<name>-v<version>-<random>`."""
    return f"maas-{manifest.name}-v{manifest.version}-"


def open_verified_session(
    registry: ModelRegistry, manifest: Manifest, config: SessionConfig
) -> ort.InferenceSession:
    """The version's graph in an onnxruntime session, opened from the path of its verified files (external
    data beside the graph), its footprint recorded."""
    with private_load_folder(private_folder_prefix(manifest)) as folder:
        # Each file straight from storage to disk, verified as it lands (parallel ranged GETs for a parted
        # one): a model of gigabytes never passes through memory on its way to the session.
        graph_path = _download(registry, manifest, manifest.model_file, folder)
        # The graph first, and vetted before its (possibly large) external data is fetched: a pickle, or a
        # graph naming files beyond the manifest's verified ones, never reaches onnxruntime. A graph whose
        # weights are external is small; one with its weights inside is read once, as onnxruntime will.
        vet_graph_file(
            graph_path.read_bytes(),
            data_files=manifest.model_data_files,
            what=f"{manifest.model_file} of model '{manifest.name}' v{manifest.version}",
            error=IntegrityError,
        )
        for path in manifest.model_data_files:
            _download(registry, manifest, path, folder)
        # What the vetting's copy of the graph took goes back before the session's own growth is measured.
        release_freed_memory()
        before = resident_bytes()
        session = ort.InferenceSession(
            str(graph_path),
            sess_options=config.for_graph(graph_bytes(manifest)).session_options(),
            providers=list(config.providers),
        )
        scratch = mapped_file_bytes(folder)
    loading = weight_loading_of(config)
    if scratch is None:  # no /proc to ask: a mapped session keeps every graph file
        scratch = graph_bytes(manifest) if loading == "mapped" else 0
    record_footprint(session, Footprint(loading, resident_before=before, scratch_bytes=scratch))
    opened_on = tuple(session.get_providers())
    if config.required_provider is not None and config.required_provider not in opened_on:
        raise Unavailable(
            f"model '{manifest.name}' v{manifest.version}: expected a session on {config.required_provider} "
            f"({ENV_PROVIDER}=cuda), got one on {list(opened_on)}; onnxruntime fell back because the GPU or "
            "its CUDA libraries are not usable here"
        )
    return session


def _download(registry: ModelRegistry, manifest: Manifest, path: str, folder: Path) -> Path:
    target = model_file_path(folder, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    registry.download_artifact(manifest, manifest.artifact(path), target)
    return target


def write_model_files(directory: Path, files: Mapping[str, bytes]) -> None:
    """Lay artifacts out as onnxruntime expects: external data beside the model, at its relative path.

    Manifests allow only safe relative paths; refusing any target outside `directory` here as well keeps
    one missed check elsewhere from writing anywhere on the machine."""
    root = directory.resolve()
    for path, data in files.items():
        target = model_file_path(root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def model_file_path(root: Path, path: str) -> Path:
    """Where artifact `path` goes inside the folder `root` (resolved); IntegrityError for a path that
    would leave it."""
    target = (root / path).resolve()
    if target == root or not target.is_relative_to(root):
        raise IntegrityError(
            f"artifact path {path[:100]!r}: expected a file inside the model's folder, got a path "
            "that resolves outside it"
        )
    return target
