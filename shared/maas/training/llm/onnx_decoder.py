"""The exported decoder run on plain onnxruntime, offline: prefill logits and a greedy loop.

This is the training side's reference for the checks (parity, greedy agreement, perplexity). It uses
the simple "copy" cache mode: the past starts empty and each step's presents are fed back as the next
pasts. Serving uses a shared preallocated buffer instead (maas.generation); both are the same math.
Outputs are always looked up by name: the builder orders them logits, present.0.key, present.1.key, ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from maas.registry import Generation
from maas.registry.manifest import MODEL_FILE
from maas.training.onnx_checks import CPU_PROVIDER

_ORT_ERRORS_ONLY = 3


def open_decoder_session(onnx_folder: Path) -> ort.InferenceSession:
    """A CPU session over the folder's graph, with its external data beside it.

    No spinning: measured here, idle threads spinning between decode steps halved the speed on 2 cores."""
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    options.intra_op_num_threads = os.cpu_count() or 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_folder / MODEL_FILE), options, providers=[CPU_PROVIDER])


class OnnxDecoder:
    """One exported decoder version, batch size 1."""

    def __init__(self, session: ort.InferenceSession, generation: Generation) -> None:
        self.session = session
        self.generation = generation

    @classmethod
    def open(cls, onnx_folder: Path, generation: Generation) -> OnnxDecoder:
        return cls(open_decoder_session(onnx_folder), generation)

    def _empty_past(self) -> dict[str, np.ndarray]:
        g = self.generation
        empty = np.zeros((1, g.num_kv_heads, 0, g.head_size), dtype=np.float32)
        feeds: dict[str, np.ndarray] = {}
        for layer in range(g.num_layers):
            feeds[g.past_key % layer] = empty
            feeds[g.past_value % layer] = empty
        return feeds

    def _present_names(self) -> list[str]:
        g = self.generation
        names: list[str] = []
        for layer in range(g.num_layers):
            names += [g.present_key % layer, g.present_value % layer]
        return names

    def _past_names(self) -> list[str]:
        g = self.generation
        names: list[str] = []
        for layer in range(g.num_layers):
            names += [g.past_key % layer, g.past_value % layer]
        return names

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """The logits [tokens, vocab] at every position of one prefill over `token_ids`."""
        g = self.generation
        ids = np.asarray([token_ids], dtype=np.int64)
        feeds = {g.input_ids: ids, g.attention_mask: np.ones_like(ids), **self._empty_past()}
        (logits,) = self.session.run([g.logits], feeds)
        return np.asarray(logits[0], dtype=np.float32)

    def greedy(self, prompt_ids: Sequence[int], max_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        """The argmax continuation of `prompt_ids`: at most `max_tokens` ids, ending at an eos id when
        `stop_at_eos` (that id included, as transformers' `generate` returns it)."""
        g = self.generation
        outputs = [g.logits, *self._present_names()]
        feeds: dict[str, np.ndarray] = self._empty_past()
        step_ids = list(prompt_ids)
        total = 0
        generated: list[int] = []
        while len(generated) < max_tokens:
            total += len(step_ids)
            feeds[g.input_ids] = np.asarray([step_ids], dtype=np.int64)
            feeds[g.attention_mask] = np.ones((1, total), dtype=np.int64)
            logits, *presents = self.session.run(outputs, feeds)
            next_id = int(np.argmax(logits[0, -1]))
            generated.append(next_id)
            if stop_at_eos and next_id in g.eos_token_ids:
                break
            feeds.update(zip(self._past_names(), presents, strict=True))
            step_ids = [next_id]
        return generated
