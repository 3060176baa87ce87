"""Which onnxruntime execution providers a session gets, from MAAS_PROVIDER."""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort

from maas.config import ENV_PROVIDER, Provider
from maas.errors import Unavailable

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def select_providers(provider: Provider, available: Sequence[str] | None = None) -> list[str]:
    """`auto` takes CUDA when onnxruntime offers it; `cuda` without CUDA is an error, never a fallback."""
    offered = list(ort.get_available_providers() if available is None else available)
    if provider == "cpu":
        return [CPU]
    if provider == "cuda":
        if CUDA not in offered:
            raise Unavailable(
                f"{ENV_PROVIDER}=cuda: expected onnxruntime to offer {CUDA}, got only {offered}; "
                "install onnxruntime-gpu on a CUDA host or set MAAS_PROVIDER=auto"
            )
        return [CUDA, CPU]
    return [CUDA, CPU] if CUDA in offered else [CPU]
