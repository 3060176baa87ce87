"""Export a module to ONNX and check the result before anyone can publish it.

The checks run on the bytes that will be published, materialised in a directory exactly as the runtime
will see them, so a single-file model and one with external data are checked the same way.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

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


def export_onnx(
    module: torch.nn.Module, example: torch.Tensor, *, external_data: bool = False
) -> dict[str, bytes]:
    """Export with a dynamic batch dimension; returns every file torch wrote, keyed by file name.

    Single-file by default. With `external_data` torch writes the weights to `model.onnx.data` next to
    `model.onnx`, which is the layout large models need, so the runtime must handle both.
    """
    module.eval()
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            verbose=False,
        )
    if program is None:
        raise ModelCheckFailed("ONNX export: expected an ONNX program from torch.onnx.export, got none")
    with tempfile.TemporaryDirectory(prefix="maas-export-") as tmp:
        program.save(str(Path(tmp) / MODEL_FILE), external_data=external_data)
        return {path.name: path.read_bytes() for path in sorted(Path(tmp).iterdir()) if path.is_file()}


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


def measure_parity(
    module: torch.nn.Module,
    session: ort.InferenceSession,
    inputs: np.ndarray,
    *,
    tolerance: float,
) -> Parity:
    """Run torch and onnxruntime on the same held-out inputs and record the largest absolute difference."""
    module.eval()
    batch = np.ascontiguousarray(inputs, dtype=np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch)).numpy()
    input_name = session.get_inputs()[0].name
    got = np.asarray(session.run(None, {input_name: batch})[0])
    if got.shape != expected.shape:
        raise ModelCheckFailed(
            f"parity: expected ONNX output shape {list(expected.shape)}, got {list(got.shape)}"
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))) if got.size else 0.0
    # NaN compares false, so a model that produces NaN never passes.
    return Parity(max_abs_diff=diff, tolerance=tolerance, samples=len(batch), passed=bool(diff <= tolerance))


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
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
