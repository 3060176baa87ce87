"""A decoder graph stepped token by token, its KV cache kept in onnxruntime values between steps.

The graph's contract (maas.registry.manifest.Generation, onnxruntime-genai's builder layout): each step
takes the new tokens' `input_ids`, an all-ones `attention_mask` as long as the sequence so far, and every
layer's past keys and values; it returns the new positions' `logits` and every layer's present keys and
values. Two ways to carry the cache, chosen by the manifest:

- shared buffer (`kv_shared_buffer`, GroupQueryAttention's mode): one buffer per layer's keys and one per
  its values, as long as the request's token budget, bound as both past and present. The graph writes the
  new positions in place, so nothing is copied or reallocated from step to step.
- copy: the past starts empty and each step's presents, one position longer, are bound as the next pasts.
  They stay onnxruntime values on the session's device; only the graph's own concatenation copies.

Either way the logits are written into one numpy buffer per sequence, bound before each run (onnxruntime
copies them there from a GPU), so no step allocates them. A long prompt is prefilled in chunks: the graph
returns logits for every position it is given, 49,152 floats (200 kB) per prompt token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from maas.errors import IntegrityError
from maas.registry.manifest import Generation
from maas.runtime.providers import CUDA

KV_DTYPES = {"FP32": np.float32, "FP16": np.float16}
LOGITS_DTYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}
# Prompt tokens one prefill run takes: 128 x 49,152 float32 logits are 25 MB. A 634-token prompt to
# SmolLM2-135M (fp32 and int4, 2 threads) prefilled as fast in chunks of 64 to 512 as in one run.
PREFILL_CHUNK_TOKENS = 128


class DecoderSession:
    """One decoder graph, checked against its manifest's generation contract when it is wrapped."""

    def __init__(
        self,
        session: ort.InferenceSession,
        generation: Generation,
        *,
        what: str,
        prefill_chunk_tokens: int = PREFILL_CHUNK_TOKENS,
    ) -> None:
        self.session = session
        self.generation = generation
        self.prefill_chunk_tokens = prefill_chunk_tokens
        layers = range(generation.num_layers)
        # Layer 0's key, its value, layer 1's key, ...: the order of the cache's buffers too.
        self.past_names = [name % i for i in layers for name in (generation.past_key, generation.past_value)]
        self.present_names = [
            name % i for i in layers for name in (generation.present_key, generation.present_value)
        ]
        self.vocab_size, self.logits_dtype = _check_graph(session, generation, self, what)
        self.kv_dtype = KV_DTYPES[generation.kv_datatype]
        # Buffers live where the graph runs: on the GPU under CUDA, so steps never move the cache.
        self.device = "cuda" if session.get_providers()[0] == CUDA else "cpu"

    def start(self, capacity: int) -> DecodeRun:
        """A fresh cache for one sequence of at most `capacity` tokens (prompt plus completion)."""
        if self.generation.kv_shared_buffer:
            return SharedBufferRun(self, capacity)
        return CopyingRun(self, capacity)

    def empty_cache(self, length: int) -> list[ort.OrtValue]:
        """Zeroed keys and values for every layer, `length` positions long, on the session's device.

        Zeroed, not merely allocated: attention masks the positions beyond the sequence, and a masked NaN
        left in uninitialized memory would still poison the weighted sum."""
        shape = (1, self.generation.num_kv_heads, length, self.generation.head_size)
        if self.device == "cpu":
            # Each its own array: onnxruntime wraps CPU numpy memory without copying it.
            return [ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, self.kv_dtype)) for _ in self.past_names]
        zeros = np.zeros(shape, self.kv_dtype)  # copied to the device once per buffer
        return [ort.OrtValue.ortvalue_from_numpy(zeros, self.device, 0) for _ in self.past_names]


class DecodeRun:
    """One sequence: its prompt prefilled, then one step per sampled token, each returning the logits that
    predict the next token."""

    def __init__(self, decoder: DecoderSession, capacity: int) -> None:
        self.decoder = decoder
        self.capacity = capacity
        self.length = 0
        self._mask = np.ones((1, capacity), np.int64)
        chunk = max(1, min(decoder.prefill_chunk_tokens, capacity))
        self._logits = np.empty((1, chunk, decoder.vocab_size), decoder.logits_dtype)

    def prefill(self, prompt: Sequence[int], *, deadline: float | None = None) -> npt.NDArray[Any] | None:
        """Run the prompt, in chunks, and return the logits [vocab] that predict the first new token. None
        when `deadline` (time.monotonic()) passed between two chunks of a long prompt."""
        if not prompt:
            raise ValueError("a prompt needs at least one token")
        self._check_room(len(prompt))
        logits: npt.NDArray[Any] = self._logits[0, -1]
        for start in range(0, len(prompt), self._logits.shape[1]):
            if start and deadline is not None and time.monotonic() >= deadline:
                return None
            part = prompt[start : start + self._logits.shape[1]]
            logits = self._feed(np.asarray([part], np.int64))
        return logits

    def step(self, token_id: int) -> npt.NDArray[Any]:
        """Run one sampled token; the logits [vocab] that predict the next, valid until the next run."""
        self._check_room(1)
        return self._feed(np.full((1, 1), token_id, np.int64))

    def _check_room(self, tokens: int) -> None:
        if self.length + tokens > self.capacity:
            raise ValueError(f"{self.length} + {tokens} tokens overrun a cache of {self.capacity}")

    def _feed(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        self.length += ids.shape[1]
        logits = self._logits[:, : ids.shape[1]]
        self._run(ids, self._mask[:, : self.length], logits)
        last: npt.NDArray[Any] = logits[0, -1]
        return last

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], logits: npt.NDArray[Any]) -> None:
        raise NotImplementedError

    def _bind_step(
        self,
        binding: ort.IOBinding,
        ids: npt.NDArray[np.int64],
        mask: npt.NDArray[np.int64],
        logits: npt.NDArray[Any],
    ) -> None:
        generation = self.decoder.generation
        binding.bind_cpu_input(generation.input_ids, ids)
        binding.bind_cpu_input(generation.attention_mask, mask)
        # Bound before the cache, so a binding's outputs list it first.
        binding.bind_output(generation.logits, "cpu", 0, logits.dtype, list(logits.shape), logits.ctypes.data)


class SharedBufferRun(DecodeRun):
    def __init__(self, decoder: DecoderSession, capacity: int) -> None:
        super().__init__(decoder, capacity)
        self._cache = decoder.empty_cache(capacity)
        # The cache is bound once; each step rebinds only the tokens, the mask and the logits.
        self._binding = decoder.session.io_binding()
        for past, present, buffer in zip(decoder.past_names, decoder.present_names, self._cache, strict=True):
            self._binding.bind_ortvalue_input(past, buffer)
            self._binding.bind_ortvalue_output(present, buffer)

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], logits: npt.NDArray[Any]) -> None:
        self._bind_step(self._binding, ids, mask, logits)
        self.decoder.session.run_with_iobinding(self._binding)


class CopyingRun(DecodeRun):
    def __init__(self, decoder: DecoderSession, capacity: int) -> None:
        super().__init__(decoder, capacity)
        self._cache = decoder.empty_cache(0)

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], logits: npt.NDArray[Any]) -> None:
        decoder = self.decoder
        binding = decoder.session.io_binding()
        self._bind_step(binding, ids, mask, logits)
        for past, present, buffer in zip(decoder.past_names, decoder.present_names, self._cache, strict=True):
            binding.bind_ortvalue_input(past, buffer)
            binding.bind_output(present, decoder.device, 0)
        decoder.session.run_with_iobinding(binding)
        # Output 0 is the logits; the presents follow in the order they were bound, the cache's order.
        self._cache = binding.get_outputs()[1:]


def _check_graph(
    session: ort.InferenceSession, generation: Generation, decoder: DecoderSession, what: str
) -> tuple[int, type[np.floating[Any]]]:
    """The graph's vocabulary size and logits type, once its inputs and outputs are the contract's."""
    inputs = {arg.name: arg for arg in session.get_inputs()}
    outputs = {arg.name: arg for arg in session.get_outputs()}
    expected_inputs = {generation.input_ids, generation.attention_mask, *decoder.past_names}
    expected_outputs = {generation.logits, *decoder.present_names}
    if set(inputs) != expected_inputs or not expected_outputs <= set(outputs):
        raise IntegrityError(
            f"{what}: expected a decoder graph with inputs {sorted(expected_inputs)} and outputs including "
            f"{sorted(expected_outputs)}, got inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    logits = outputs[generation.logits]
    dtype = LOGITS_DTYPES.get(logits.type)
    vocab = logits.shape[-1] if logits.shape else None
    if dtype is None or not isinstance(vocab, int):
        raise IntegrityError(
            f"{what}: expected logits of type float or float16 with a fixed vocabulary dimension, "
            f"got {logits.type} of shape {logits.shape}"
        )
    key = inputs[decoder.past_names[0]]
    heads, head_size = key.shape[1], key.shape[3]
    declared = (generation.num_kv_heads, generation.head_size)
    if (isinstance(heads, int) and heads != declared[0]) or (
        isinstance(head_size, int) and head_size != declared[1]
    ):
        raise IntegrityError(
            f"{what}: expected past keys of {declared[0]} heads of size {declared[1]} (the manifest's), "
            f"got a graph with {heads} heads of size {head_size}"
        )
    return vocab, dtype
