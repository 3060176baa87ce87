"""Text generation on plain onnxruntime: a KV-cache decoder stepped token by token, sampled in numpy,
detokenized incrementally, with chat templates rendered in Jinja's sandbox. No torch, no transformers.

The chat template (jinja2) and the tokenizer load with the first model, not with the package: import
`maas.generation.chat_template` itself for `ChatTemplate`."""

from __future__ import annotations

from maas.generation.decoder import DecoderSession
from maas.generation.events import Finished, FinishReason, GenerationEvent, TextDelta, TokenLogprob
from maas.generation.loader import GeneratorLoader, generator_session_config, load_generator, open_generator
from maas.generation.sampling import MAX_LOGPROBS, SamplingParams
from maas.generation.text_generator import TextGenerator

__all__ = [
    "MAX_LOGPROBS",
    "DecoderSession",
    "FinishReason",
    "Finished",
    "GenerationEvent",
    "GeneratorLoader",
    "SamplingParams",
    "TextDelta",
    "TextGenerator",
    "TokenLogprob",
    "generator_session_config",
    "load_generator",
    "open_generator",
]
