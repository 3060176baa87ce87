"""The `text-bert` recipe: a small BERT-style encoder classifier trained from scratch on a synthetic
sentiment set where word order and negation decide the label (see maas.training.text_data).

Clients send text. The WordPiece tokenizer, learned on the train split only, ships as the version's
`tokenizer.json`, and the serving runtime tokenizes with it before the graph, which takes `input_ids`
and `attention_mask` with dynamic batch and sequence axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from maas.registry import Preprocessing, TokenizerPreprocessing
from maas.training.encoder import BertEncoder, EncoderConfig, TextClassifier
from maas.training.export import GraphSpec
from maas.training.loop import Objective
from maas.training.recipe import FitResult, ModelDetails, Recipe, check_field
from maas.training.supervised import (
    Examples,
    HeldOutSplits,
    SupervisedConfig,
    fit_supervised,
    stratified_split,
)
from maas.training.text_data import (
    LABELS,
    build_wordpiece_tokenizer,
    encode_texts,
    majority_baseline,
    make_sentiment_corpus,
)

RECIPE_NAME = "text-bert"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_SCHEME = "WordPiece, lower-cased"
TEXT_AXES = {0: "batch", 1: "sequence"}
TEXT_GRAPH = GraphSpec(
    inputs=("input_ids", "attention_mask"),
    outputs=("logits",),
    dynamic_axes={"input_ids": TEXT_AXES, "attention_mask": TEXT_AXES},
)


@dataclass(frozen=True)
class TextBertConfig(SupervisedConfig):
    """`width` is the hidden size, `depth` the number of encoder layers; a minute or two on two cores."""

    n_samples: int = 4000
    vocab_size: int = 1000
    max_length: int = 32
    heads: int = 4
    width: int = 64
    depth: int = 2
    dropout: float = 0.1
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.01
    epochs: int = 12
    patience: int = 3
    lr_schedule: str = "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field(
            self.n_samples >= 40 and self.n_samples % 2 == 0,
            "n_samples",
            "an even integer >= 40",
            self.n_samples,
        )
        check_field(self.vocab_size >= 50, "vocab_size", "an integer >= 50", self.vocab_size)
        check_field(self.max_length >= 8, "max_length", "an integer >= 8", self.max_length)
        check_field(self.heads >= 1, "heads", "an integer >= 1", self.heads)
        check_field(self.width % self.heads == 0, "width", f"a multiple of heads ({self.heads})", self.width)


def _accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == targets))


OBJECTIVE = Objective(
    loss=torch.nn.CrossEntropyLoss(), metric=_accuracy, metric_name="accuracy", metric_goal="maximize"
)


def fit_text_bert(config: TextBertConfig) -> FitResult:
    texts, labels = make_sentiment_corpus(config.n_samples, config.seed)
    (train_texts, train_labels), (val_texts, val_labels), (test_texts, test_labels) = stratified_split(
        texts, labels, config
    )
    # The vocabulary is a statistic of the data, so it is learned from the train split alone.
    tokenizer = build_wordpiece_tokenizer(train_texts, config.vocab_size, config.max_length)
    train, val, test = (
        Examples(encode_texts(tokenizer, split_texts, config.max_length), np.asarray(split_labels, np.int64))
        for split_texts, split_labels in (
            (train_texts, train_labels),
            (val_texts, val_labels),
            (test_texts, test_labels),
        )
    )
    torch.manual_seed(config.seed)
    encoder = BertEncoder(
        EncoderConfig(
            vocab_size=tokenizer.get_vocab_size(),
            hidden_size=config.width,
            num_layers=config.depth,
            num_heads=config.heads,
            intermediate_size=config.width * 4,
            max_position=config.max_length,
            dropout=config.dropout,
        )
    )
    module = TextClassifier(encoder, num_classes=len(LABELS))
    baseline = majority_baseline(test.targets)
    details = ModelDetails(
        labels=list(LABELS),
        description=(
            f"BERT-style encoder ({config.depth} layers, hidden {config.width}, {config.heads} heads) with "
            "mean pooling and a linear head, classifying sentiment from raw text"
        ),
        intended_use=(
            "Demonstrates serving a tokenized transformer classifier: text in, logits over "
            f"{LABELS} out. Not a general sentiment model."
        ),
        data_description=(
            f"{config.n_samples} synthetic sentences from maas.training.text_data (seed {config.seed}) in "
            "which negation and clause order decide the label; mirrored pairs share a bag of words with "
            f"opposite labels. Stratified split: {len(train.targets)} train, {len(val.targets)} validation, "
            f"{len(test.targets)} test. Majority-class baseline accuracy on test: {baseline:.3f}."
        ),
        limitations=(
            f"Knows only the generator's small vocabulary and templates; sequences longer than "
            f"{config.max_length} tokens are truncated."
        ),
        preprocessing=tokenized_text(TOKENIZER_SCHEME, config.max_length),
        extra_files={TOKENIZER_FILE: tokenizer.to_str().encode("utf-8")},
    )
    params = {
        "vocab_size_learned": tokenizer.get_vocab_size(),
        "majority_baseline_accuracy": baseline,
        "loss": "cross_entropy",
    }
    return fit_supervised(
        module,
        HeldOutSplits(train=train, val=val, test=test),
        OBJECTIVE,
        config,
        recipe=RECIPE_NAME,
        params=params,
        details=details,
        graph=TEXT_GRAPH,
    )


def tokenized_text(scheme: str, max_length: int) -> Preprocessing:
    """Text in: the runtime tokenizes each string with the version's tokenizer.json before the graph."""
    return Preprocessing(
        description=(
            f"UTF-8 text, one string per row; the runtime tokenizes it with the version's {TOKENIZER_FILE} "
            f"({scheme}, [CLS] ... [SEP], truncated at {max_length} tokens)."
        ),
        tokenizer=TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=max_length),
    )


TEXT_BERT = Recipe(
    name=RECIPE_NAME,
    task="classification",
    default_config=TextBertConfig(),
    fit=fit_text_bert,
    primary_metric="accuracy",
    primary_metric_goal="maximize",
)
