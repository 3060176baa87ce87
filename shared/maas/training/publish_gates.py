"""The gates every version passes before its first write (parity with torch, finite metrics, int8's metric and
speed), apart from the training code: `maas publish DIR` runs them on a kept run without importing torch."""

from __future__ import annotations

import math

from maas.registry import ManifestDraft
from maas.training.errors import ModelCheckFailed, ParityCheckFailed, QuantizationRefused
from maas.training.int8_speed import Int8Speed, speed_refusal
from maas.training.metric_goals import degradation


def ensure_publishable(draft: ManifestDraft) -> None:
    """Refuse a model whose export was not shown to match torch, or a quantized one that lost too much or
    gained too little speed (int8_speed).

    A quantized graph is not expected to match torch to 1e-4; its gate is the measured metric delta."""
    # JSON has no NaN: a non-finite metric would make an immutable manifest that nothing can read back.
    broken = sorted(name for name, value in draft.metrics.items() if not math.isfinite(value))
    if broken:
        raise ModelCheckFailed(f"metrics: expected finite values, got NaN or infinity for {broken}")
    quantization = draft.quantization
    if quantization is not None:
        lost = degradation(quantization.quantized_value, quantization.fp32_value, draft.primary_metric_goal)
        if not lost <= quantization.max_degradation:
            raise QuantizationRefused(
                f"quantization: expected {quantization.metric} to degrade by at most "
                f"{quantization.max_degradation:g} against fp32 ({quantization.fp32_value:.6g}), "
                f"got {quantization.quantized_value:.6g} (worse by {lost:.6g}); to publish it anyway, raise "
                "the limit with --max-degradation or `quantization: max_degradation` in the --config file"
            )
        speed = Int8Speed.from_params(draft.params)
        refusal = speed_refusal(speed) if speed is not None else None
        if refusal is not None:
            raise QuantizationRefused(refusal)
        return
    ensure_parity(draft)


def ensure_parity(draft: ManifestDraft) -> None:
    """Refuse a model whose ONNX export was not shown to match torch."""
    parity = draft.parity
    if parity is None:
        raise ParityCheckFailed("parity: expected a measured torch/onnxruntime parity check, found none")
    if not parity.passed:
        raise ParityCheckFailed(
            f"parity: expected max abs diff <= {parity.tolerance:g} between torch and onnxruntime, "
            f"got {parity.max_abs_diff:g} over {parity.samples} samples"
        )
