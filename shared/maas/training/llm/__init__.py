"""Large language models, offline: import a pretrained decoder, export it to ONNX with its KV cache,
check it against transformers, measure it and publish it (the `smollm2-135m` recipe).

Imports torch (transformers only in the modules that load weights, so reading an export stays light);
never used online. onnxruntime-genai's builder runs as a subprocess.
"""

from __future__ import annotations

from maas.training.llm.export import (
    PRECISIONS,
    PUBLISHED_FILES,
    Precision,
    build_onnx,
    generation_of,
    llm_draft,
    published_files,
)
from maas.training.llm.onnx_decoder import OnnxDecoder, open_decoder_session

__all__ = [
    "PRECISIONS",
    "PUBLISHED_FILES",
    "OnnxDecoder",
    "Precision",
    "build_onnx",
    "generation_of",
    "llm_draft",
    "open_decoder_session",
    "published_files",
]
