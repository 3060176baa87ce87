"""The same weights in transformers, on CPU in fp32: what the exported graph is checked against.

torch runs on one intra-op thread here. Measured on a shared 2-core machine, its thread pool made a tiny
decoder's `generate` 10x slower than one thread did (every small matmul waited on the pool); this is a
check, not a benchmark, and onnxruntime's own threads are not competing with it that way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch


class TorchDecoder:
    """A Hugging Face causal LM folder loaded in fp32, eval mode, batch size 1."""

    def __init__(self, hf_folder: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model: Any = AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        self.tokenizer: Any = AutoTokenizer.from_pretrained(hf_folder)

    def chat_prompt_ids(self, user_message: str) -> list[int]:
        """The token ids of a one-turn chat as the model's own template renders it, ready for the reply."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """The logits [tokens, vocab] at every position of one forward pass over `token_ids`."""
        with torch.inference_mode(), _one_thread():
            output = self.model(torch.tensor([list(token_ids)], dtype=torch.long), use_cache=False)
        return np.asarray(output.logits[0].float().numpy(), dtype=np.float32)

    def greedy(self, prompt_ids: Sequence[int], max_tokens: int) -> list[int]:
        """transformers' `generate(do_sample=False)`: at most `max_tokens` new ids, ending at an eos id."""
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
        with torch.inference_mode(), _one_thread():
            output = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                # Sampling knobs the generation config may carry would only warn under greedy decoding.
                temperature=None,
                top_p=None,
                top_k=None,
            )
        return [int(token) for token in output[0, ids.shape[1] :]]


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
