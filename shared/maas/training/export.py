"""Export a module to ONNX, and compare what torch and onnxruntime compute on the same inputs.

The checks the export must pass before anyone can publish it are maas.training.onnx_checks' (no torch).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from maas.registry import Parity
from maas.registry.manifest import MODEL_FILE
from maas.training.errors import ModelCheckFailed
from maas.training.onnx_checks import read_folder_files

# read_folder_files is also this module's name for it, as before the checks moved to onnx_checks.
__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "GraphSpec",
    "compare_outputs",
    "export_onnx",
    "measure_parity",
    "onnx_outputs",
    "read_folder_files",
    "torch_outputs",
]

INPUT_NAME = "input"
OUTPUT_NAME = "output"
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
