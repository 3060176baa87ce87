"""Why a trained model may not be published. Both are the model's fault, not the caller's or storage's."""

from __future__ import annotations

from maas.errors import MaasError


class ModelCheckFailed(MaasError, status=422):
    """The exported ONNX model failed a check (onnx.checker, shapes). HTTP 422."""


class ParityCheckFailed(ModelCheckFailed, status=422):
    """onnxruntime disagrees with torch beyond the tolerance, or parity was never measured. HTTP 422."""


class QuantizationRefused(ModelCheckFailed, status=422):
    """The quantized model lost more of its primary metric than allowed. HTTP 422."""
