"""A tiny decoder of SmolLM2's architecture, written as a Hugging Face folder in seconds, for tests.

Random weights (seeded) are enough there: what tests check is the path (export, manifest, serving loop,
parity), not the text. The tokenizer is a byte-level BPE with SmolLM2's special tokens at the same ids
(<|endoftext|>=0, <|im_start|>=1, <|im_end|>=2) and SmolLM2's ChatML template, so code that handles the
real model handles this one the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<|im_start|>", "<|im_end|>", "<|im_end|>"
BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID = 1, 2, 2
TINY_VOCAB_SIZE = 384
TINY_CONTEXT_LENGTH = 256
# SmolLM2-135M-Instruct's template, with its default system prompt, verbatim.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# What the BPE merges are learnt from: English, and multi-byte characters so that tests meet tokens that end
# inside a UTF-8 character.
_TOKENIZER_CORPUS = (
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog. "
    "Hello, how are you today? I am a small language model and I answer questions. "
    "Zürich, café, naïve, façade, smørrebrød, 東京, 北京, ☕ and 🙂 are written in UTF-8. "
    "One, two, three, four, five, six, seven, eight, nine, ten. 0123456789 + - * / = ( ) [ ] { } "
    "system user assistant\n"
)


def tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE (every byte is a token, so any text encodes) with the ChatML template."""
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([_TOKENIZER_CORPUS] * 20, trainer)
    # transformers' constructors are untyped in its own annotations.
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_config(vocab_size: int) -> LlamaConfig:
    """SmolLM2's shape in miniature: grouped-query attention (4 query heads over 2 KV heads), tied
    embeddings, rotary positions."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=TINY_CONTEXT_LENGTH,
        tie_word_embeddings=True,
        # Wider than the usual 0.02, so that the layers, not the tied embedding of the last token, decide
        # the next one: greedy text then varies instead of repeating its input.
        initializer_range=0.2,
        bos_token_id=BOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=PAD_TOKEN_ID,
    )


def write_tiny_llm(folder: Path, *, seed: int = 0) -> Path:
    """Write config.json, model.safetensors, generation_config.json, the tokenizer and chat_template.jinja
    to `folder` (created); returns it."""
    tokenizer = tiny_tokenizer()
    vocab = tokenizer.backend_tokenizer.get_vocab_size(with_added_tokens=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(vocab))
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=BOS_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, pad_token_id=PAD_TOKEN_ID
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
