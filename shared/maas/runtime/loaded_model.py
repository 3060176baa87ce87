"""An onnxruntime session bound to the manifest it was verified against.

All I/O happens in `load_model`; `LoadedModel.run` only computes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument, InvalidGraph

from maas.datatypes import BY_V2, from_onnx
from maas.errors import IntegrityError, InvalidInput
from maas.registry.manifest import Manifest, Signature, TensorSpec
from maas.registry.store import ModelRegistry

PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    manifest: Manifest
    session: ort.InferenceSession
    providers: tuple[str, ...]
    # Disk used for external-data models; removed when the model is evicted.
    workdir: Path | None = None

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

    def release(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def load_model(
    registry: ModelRegistry, manifest: Manifest, providers: Sequence[str], *, warmup: bool = True
) -> LoadedModel:
    """Fetch and verify every artifact, open the session, check its signature, and warm it up."""
    blobs = {a.path: registry.read_artifact(manifest, a) for a in manifest.artifacts}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Lambda gives one vCPU per 1769 MB; more intra-op threads than cores only adds contention.
    options.intra_op_num_threads = max(1, min(os.cpu_count() or 1, 4))
    workdir: Path | None = None
    if len(blobs) == 1 or not _uses_external_data(manifest):
        source: bytes | str = blobs[manifest.model_file]
    else:
        # onnxruntime resolves external data relative to the model path, so it needs real files.
        workdir = Path(tempfile.mkdtemp(prefix=f"maas-{manifest.name}-v{manifest.version}-"))
        write_model_files(workdir, blobs)
        source = str(workdir / manifest.model_file)
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=list(providers))
        model = LoadedModel(manifest, session, tuple(session.get_providers()), workdir)
        _check_signature(model)
        if warmup:
            _warm_up(model)
    except Exception:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    return model


def _uses_external_data(manifest: Manifest) -> bool:
    return any(a.path != manifest.model_file for a in manifest.artifacts if a.path.endswith(".data"))


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
