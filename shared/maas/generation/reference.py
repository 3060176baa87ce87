"""The raw onnxruntime greedy loop: the baseline that tests and benchmarks hold the served path to.

Nothing of maas's decoding is used here, only onnxruntime and numpy over an exported folder (model.onnx
with model.onnx.data, read as the version's `Generation` contract names them): the prompt prefilled in one
run, then one run per token with the presents fed back as pasts (`shared_buffer=False`), or bound in place
with IO binding (`shared_buffer=True`, the faster loop), argmax every step.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from maas.registry.manifest import Generation


@dataclass(frozen=True, slots=True)
class ReferenceRun:
    """The greedy tokens (an end-of-sequence token included, as the served path counts it) and timings."""

    tokens: list[int]
    prefill_seconds: float
    decode_seconds: float

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens after the first over the time their steps took: the decode rate, prefill excluded."""
        steps = len(self.tokens) - 1
        return steps / self.decode_seconds if steps > 0 and self.decode_seconds > 0 else 0.0


def greedy_reference(
    model_dir: Path,
    prompt_ids: Sequence[int],
    max_tokens: int,
    *,
    generation: Generation,
    eos_token_ids: Collection[int] = (),
    threads: int | None = None,
    shared_buffer: bool = False,
    session: ort.InferenceSession | None = None,
) -> ReferenceRun:
    """Greedy decoding of `prompt_ids` by the folder's graph, up to `max_tokens` or an eos id.

    `session`: one already open on the folder's model.onnx (a benchmark reuses it across runs)."""
    if session is None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
    kv_shape = (1, generation.num_kv_heads, 0, generation.head_size)
    layers = range(generation.num_layers)
    names = [pattern % layer for layer in layers for pattern in (generation.past_key, generation.past_value)]
    presents = [
        pattern % layer for layer in layers for pattern in (generation.present_key, generation.present_value)
    ]
    step: _CopySteps | _SharedBufferSteps
    if shared_buffer:
        step = _SharedBufferSteps(session, names, presents, kv_shape, len(prompt_ids) + max_tokens)
    else:
        step = _CopySteps(session, names, presents, kv_shape)
    started = time.perf_counter()
    logits = step(list(prompt_ids), len(prompt_ids))
    prefilled = time.perf_counter()
    tokens: list[int] = []
    total = len(prompt_ids)
    while True:
        token = int(np.argmax(logits))
        tokens.append(token)
        if token in eos_token_ids or len(tokens) == max_tokens:
            break
        total += 1
        logits = step([token], total)
    return ReferenceRun(tokens, prefilled - started, time.perf_counter() - prefilled)


class _CopySteps:
    def __init__(
        self, session: ort.InferenceSession, pasts: list[str], presents: list[str], kv_shape: tuple[int, ...]
    ) -> None:
        self.session = session
        self.outputs = ["logits", *presents]
        self.cache = {name: np.zeros(kv_shape, np.float32) for name in pasts}

    def __call__(self, tokens: list[int], total: int) -> npt.NDArray[Any]:
        feeds = {"input_ids": np.array([tokens], np.int64), "attention_mask": np.ones((1, total), np.int64)}
        logits, *presents = self.session.run(self.outputs, {**feeds, **self.cache})
        self.cache = dict(zip(self.cache, presents, strict=True))
        return np.asarray(logits[0, -1])


class _SharedBufferSteps:
    def __init__(
        self,
        session: ort.InferenceSession,
        pasts: list[str],
        presents: list[str],
        kv_shape: tuple[int, ...],
        capacity: int,
    ) -> None:
        self.session = session
        batch, heads, _, head_size = kv_shape
        self.buffers = [
            ort.OrtValue.ortvalue_from_numpy(np.zeros((batch, heads, capacity, head_size), np.float32))
            for _ in pasts
        ]
        self.pasts, self.presents = pasts, presents

    def __call__(self, tokens: list[int], total: int) -> npt.NDArray[Any]:
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.array([tokens], np.int64))
        binding.bind_cpu_input("attention_mask", np.ones((1, total), np.int64))
        binding.bind_output("logits")
        for past, present, buffer in zip(self.pasts, self.presents, self.buffers, strict=True):
            binding.bind_ortvalue_input(past, buffer)
            binding.bind_ortvalue_output(present, buffer)
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.get_outputs()[0].numpy()[0, -1])
