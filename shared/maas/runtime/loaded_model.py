"""An onnxruntime session bound to the manifest it was verified against.

All I/O happens in `load_model`; `LoadedModel.run` only computes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument, InvalidGraph

from maas.config import GraphOptimization
from maas.datatypes import BY_V2, from_onnx
from maas.errors import IntegrityError, InvalidInput
from maas.registry.manifest import Manifest
from maas.registry.store import ModelRegistry
from maas.signature import Signature, TensorSpec

PLATFORM = "onnxruntime_onnx"


_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    providers: tuple[str, ...]
    # None: one intra-op thread per CPU this process may use.
    intra_op_threads: int | None = None
    graph_optimization: GraphOptimization = "all"
    warmup: bool = True

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = _OPTIMIZATION_LEVELS[self.graph_optimization]
        options.intra_op_num_threads = self.intra_op_threads or usable_cpus()
        options.log_severity_level = 3
        return options


def usable_cpus() -> int:
    """CPUs this process may run on: Lambda and containers restrict affinity below os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    manifest: Manifest
    session: ort.InferenceSession
    providers: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def size_bytes(self) -> int:
        return self.manifest.total_bytes

    def run(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]) -> list[npt.NDArray[Any]]:
        try:
            results: list[npt.NDArray[Any]] = self.session.run(list(outputs), dict(inputs))
        except (InvalidArgument, InvalidGraph) as exc:
            # The signature check passed, so this is a value the graph itself rejects (e.g. a bad index).
            raise InvalidInput(
                f"model '{self.name}' v{self.version} rejected the inputs: {_first_line(exc)}"
            ) from None
        return results


def disk_bytes_needed(manifest: Manifest) -> int:
    """Local disk a load needs while the session opens: the graph and its external data."""
    return sum(manifest.artifact(path).bytes for path in manifest.graph_files)


def load_model(registry: ModelRegistry, manifest: Manifest, config: SessionConfig) -> LoadedModel:
    """Fetch and verify the graph's artifacts, open the session, check its signature, and warm it up.

    The session always opens from a fresh private folder holding only verified files: opened from bytes,
    onnxruntime would resolve a graph's external-data references against the working directory, reading
    weights no checksum covers. The folder goes once the session exists, since onnxruntime has read (or
    mapped) everything by then.
    """
    blobs = {path: registry.read_artifact(manifest, manifest.artifact(path)) for path in manifest.graph_files}
    with tempfile.TemporaryDirectory(prefix=f"maas-{manifest.name}-v{manifest.version}-") as workdir:
        write_model_files(Path(workdir), blobs)
        del blobs
        session = ort.InferenceSession(
            str(Path(workdir) / manifest.model_file),
            sess_options=config.session_options(),
            providers=list(config.providers),
        )
    model = LoadedModel(manifest, session, tuple(session.get_providers()))
    _check_signature(model)
    if config.warmup:
        _warm_up(model)
    return model


def write_model_files(directory: Path, files: Mapping[str, bytes]) -> None:
    """Lay artifacts out as onnxruntime expects: external data beside the model, at its relative path."""
    for path, data in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def signature_of(session: ort.InferenceSession) -> Signature:
    """The signature as the graph itself declares it: V2 datatypes, -1 for symbolic dimensions."""
    return Signature(
        inputs=[_spec(arg) for arg in session.get_inputs()],
        outputs=[_spec(arg) for arg in session.get_outputs()],
    )


def _check_signature(model: LoadedModel) -> None:
    """The manifest's signature is what we validate requests against, so it must match the graph."""
    actual = signature_of(model.session)
    signature = model.manifest.signature
    for kind, declared, graph in (
        ("inputs", signature.inputs, actual.inputs),
        ("outputs", signature.outputs, actual.outputs),
    ):
        if [(s.name, s.datatype, len(s.shape)) for s in declared] != [
            (s.name, s.datatype, len(s.shape)) for s in graph
        ]:
            raise IntegrityError(
                f"model '{model.name}' v{model.version}: manifest {kind} "
                f"{[s.model_dump() for s in declared]} do not match the graph's "
                f"{[s.model_dump() for s in graph]}"
            )


def _spec(arg: Any) -> TensorSpec:
    datatype = from_onnx(arg.type)
    if datatype is None:
        raise IntegrityError(f"graph tensor '{arg.name}': expected a V2-compatible type, got {arg.type}")
    shape = [dim if isinstance(dim, int) else -1 for dim in arg.shape]
    return TensorSpec(name=arg.name, datatype=datatype.v2, shape=shape)


def _warm_up(model: LoadedModel) -> None:
    # The first run allocates arenas and picks kernels; paying that here keeps it off a user's request.
    inputs = {spec.name: zeros_like_spec(spec) for spec in model.manifest.signature.inputs}
    model.run(inputs, [spec.name for spec in model.manifest.signature.outputs])


def zeros_like_spec(spec: TensorSpec, batch: int = 1) -> npt.NDArray[Any]:
    shape = [batch if dim < 0 else dim for dim in spec.shape]
    dtype = BY_V2[spec.datatype].numpy
    if dtype == np.object_:
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=dtype)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
