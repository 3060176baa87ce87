"""Export a module to ONNX and check the result before anyone can publish it.

The checks run on the bytes that will be published, materialised in a directory exactly as the runtime
will see them, so a single-file model and one with external data are checked the same way.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

from maas.errors import IntegrityError
from maas.registry import Parity, Signature
from maas.registry.manifest import MODEL_FILE
from maas.runtime import signature_of as runtime_signature_of
from maas.runtime import write_model_files
from maas.training.errors import ModelCheckFailed

INPUT_NAME = "input"
OUTPUT_NAME = "output"
CPU_PROVIDER = "CPUExecutionProvider"
_ORT_ERRORS_ONLY = 3
# The exporter's own loggers: torch's, and the ONNX IR passes it runs through onnxscript.
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@dataclass(frozen=True)
class GraphSpec:
    """How a module's forward maps to ONNX: input and output names, and which axes are dynamic.

    `forward` takes the inputs positionally in `inputs` order. Axes with the same name (e.g. "batch"
    on input_ids and attention_mask) are one dimension, so the exporter knows they must agree."""

    inputs: tuple[str, ...] = (INPUT_NAME,)
    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=lambda: {INPUT_NAME: {0: "batch"}})

    def tensors(self, inputs: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise ModelCheckFailed(f"inputs: expected {list(self.inputs)}, missing {missing}")
        return tuple(torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self.inputs)


def export_onnx(
    module: torch.nn.Module,
    example: Mapping[str, np.ndarray],
    spec: GraphSpec | None = None,
    *,
    external_data: bool = False,
) -> dict[str, bytes]:
    """Export with the spec's dynamic axes; returns every file torch wrote, keyed by file name.

    Single-file by default. With `external_data` torch writes the weights to `model.onnx.data` next to
    `model.onnx`, which is the layout large models need, so the runtime must handle both.
    """
    spec = spec or GraphSpec()
    module.eval()
    dims: dict[str, torch.export.Dim] = {}
    dynamic_shapes = tuple(
        {
            axis: dims.setdefault(name, torch.export.Dim(name))
            for axis, name in spec.dynamic_axes.get(inp, {}).items()
        }
        for inp in spec.inputs
    )
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            spec.tensors(example),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            verbose=False,
        )
    if program is None:
        raise ModelCheckFailed("ONNX export: expected an ONNX program from torch.onnx.export, got none")
    with tempfile.TemporaryDirectory(prefix="maas-export-") as tmp:
        program.save(str(Path(tmp) / MODEL_FILE), external_data=external_data)
        return read_folder_files(Path(tmp))


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


def read_file_inside(folder: Path, relative: str, refuse: Callable[[str], Exception]) -> bytes:
    """The plain file at `relative` under `folder`, or `refuse(why)` raised when any step of the way is a
    symlink, it resolves outside the folder, or it is not a file: a model folder cannot pull in files
    from elsewhere on the machine."""
    candidate = folder
    for part in PurePosixPath(relative).parts:
        candidate = candidate / part
        if candidate.is_symlink():
            raise refuse(f"a symlink at {candidate}")
    if not candidate.resolve().is_relative_to(folder.resolve()):
        raise refuse("a path that resolves outside the model's folder")
    if not candidate.is_file():
        raise refuse(f"no file at {candidate}")
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
        try:
            onnx.checker.check_model(str(directory / model_file))
        except onnx.checker.ValidationError as exc:
            raise ModelCheckFailed(f"onnx.checker rejected '{model_file}': {exc}") from None


def external_data_files(files: Mapping[str, bytes], model_file: str = MODEL_FILE) -> list[str]:
    """Every external-data location the graph references, each required to be one of the files.

    The runtime opens the graph beside exactly these verified files, so a location outside them would
    either fail to load or, worse, read weights no checksum covers."""
    with materialized({model_file: files[model_file]}) as directory:
        model = onnx.load(str(directory / model_file), load_external_data=False)
    locations = sorted(
        {
            ExternalDataInfo(tensor).location
            for tensor in _get_all_tensors(model)
            if uses_external_data(tensor)
        }
    )
    missing = [location for location in locations if location not in files]
    if missing:
        raise ModelCheckFailed(
            f"external data: expected {missing} among the exported files, got {sorted(files)}"
        )
    return locations


def open_session(files: Mapping[str, bytes], model_file: str = MODEL_FILE) -> ort.InferenceSession:
    """A CPU onnxruntime session over the files, opened from a directory as the runtime opens them."""
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    with materialized(files) as directory:
        return ort.InferenceSession(str(directory / model_file), options, providers=[CPU_PROVIDER])


def signature_of(session: ort.InferenceSession) -> Signature:
    """Read the signature from the ONNX graph itself, so the manifest can never disagree with the model."""
    try:
        return runtime_signature_of(session)
    except IntegrityError as exc:
        raise ModelCheckFailed(f"signature: {exc}") from None


def torch_outputs(
    module: torch.nn.Module, inputs: Mapping[str, np.ndarray], spec: GraphSpec, batch_size: int = 256
) -> list[np.ndarray]:
    """The module's outputs on `inputs`, in `spec.outputs` order, computed in batches."""
    module.eval()
    count = len(next(iter(inputs.values())))
    chunks: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for start in range(0, count, batch_size):
            batch = {name: array[start : start + batch_size] for name, array in inputs.items()}
            result = module(*spec.tensors(batch))
            outputs = result if isinstance(result, tuple | list) else (result,)
            if len(outputs) != len(spec.outputs):
                raise ModelCheckFailed(
                    f"outputs: expected {len(spec.outputs)} ({list(spec.outputs)}) from the module, "
                    f"got {len(outputs)}"
                )
            chunks.append([output.detach().numpy() for output in outputs])
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(spec.outputs))]


def onnx_outputs(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], batch_size: int = 256
) -> list[np.ndarray]:
    """The session's outputs on `inputs`, in graph order, computed in batches."""
    count = len(next(iter(inputs.values())))
    chunks: list[list[np.ndarray]] = []
    for start in range(0, count, batch_size):
        batch = {
            name: np.ascontiguousarray(array[start : start + batch_size]) for name, array in inputs.items()
        }
        chunks.append([np.asarray(output) for output in session.run(None, batch)])
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]


def measure_parity(
    module: torch.nn.Module,
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    *,
    tolerance: float,
    spec: GraphSpec | None = None,
) -> Parity:
    """Run torch and onnxruntime on the same held-out inputs and record the largest absolute difference."""
    spec = spec or GraphSpec()
    named = inputs if isinstance(inputs, Mapping) else {spec.inputs[0]: inputs}
    return compare_outputs(
        torch_outputs(module, named, spec), onnx_outputs(session, named), spec.outputs, tolerance=tolerance
    )


def compare_outputs(
    expected: Sequence[np.ndarray], got: Sequence[np.ndarray], names: Sequence[str], *, tolerance: float
) -> Parity:
    """Parity of already computed torch (`expected`) and onnxruntime (`got`) outputs."""
    diffs = [0.0]
    for name, want, have in zip(names, expected, got, strict=True):
        if have.shape != want.shape:
            raise ModelCheckFailed(
                f"parity: expected ONNX output '{name}' shape {list(want.shape)}, got {list(have.shape)}"
            )
        if want.size:
            diffs.append(float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)))))
    # np.max propagates NaN, so a model that produces NaN never passes.
    diff = float(np.max(diffs))
    samples = len(expected[0]) if expected else 0
    return Parity(max_abs_diff=diff, tolerance=tolerance, samples=samples, passed=bool(diff <= tolerance))


@contextmanager
def materialized(files: Mapping[str, bytes]) -> Iterator[Path]:
    """Write the files into a temporary directory, which is removed on exit."""
    with tempfile.TemporaryDirectory(prefix="maas-model-") as tmp:
        directory = Path(tmp)
        write_model_files(directory, files)
        yield directory


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's notes about itself (missing torchvision ops, deprecations); errors still raise."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # Inputs sharing a dynamic axis (input_ids and attention_mask) make torch note it once each.
            warnings.filterwarnings(
                "ignore", message=r"# The axis name: .* will not be used", category=UserWarning
            )
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
