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
from sklearn.model_selection import train_test_split

from maas.registry import Preprocessing, TokenizerPreprocessing
from maas.training.encoder import BertEncoder, EncoderConfig, TextClassifier
from maas.training.export import GraphSpec
from maas.training.lineage import dataset_hash
from maas.training.loop import Objective, Split, train_loop
from maas.training.recipe import FitResult, Recipe, TrainingConfig, check_field
from maas.training.text_data import (
    LABELS,
    build_wordpiece_tokenizer,
    encode_texts,
    majority_baseline,
    make_sentiment_corpus,
)

RECIPE_NAME = "text-bert"
TOKENIZER_FILE = "tokenizer.json"
TEXT_AXES = {0: "batch", 1: "sequence"}
TEXT_GRAPH = GraphSpec(
    inputs=("input_ids", "attention_mask"),
    outputs=("logits",),
    dynamic_axes={"input_ids": TEXT_AXES, "attention_mask": TEXT_AXES},
)


@dataclass(frozen=True)
class TextBertConfig(TrainingConfig):
    """`width` is the hidden size, `depth` the number of encoder layers; a minute or two on two cores."""

    n_samples: int = 4000
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    vocab_size: int = 1000
    max_length: int = 32
    heads: int = 4
    width: int = 64
    depth: int = 2
    dropout: float = 0.1
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 64
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
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            check_field(0 < value < 0.5, name, "a number in (0, 0.5)", value)
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
    rest_texts, test_texts, rest_labels, test_labels = train_test_split(
        texts, labels, test_size=config.test_fraction, random_state=config.seed, stratify=labels
    )
    train_texts, val_texts, train_labels, val_labels = train_test_split(
        rest_texts,
        rest_labels,
        test_size=config.val_fraction / (1 - config.test_fraction),
        random_state=config.seed,
        stratify=rest_labels,
    )
    # The vocabulary is a statistic of the data, so it is learned from the train split alone.
    tokenizer = build_wordpiece_tokenizer(train_texts, config.vocab_size, config.max_length)
    splits = {
        name: (*encode_texts(tokenizer, split_texts, config.max_length), np.asarray(split_labels, np.int64))
        for name, split_texts, split_labels in (
            ("train", train_texts, train_labels),
            ("val", val_texts, val_labels),
            ("test", test_texts, test_labels),
        )
    }
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

    def split(name: str) -> Split:
        ids, mask, targets = splits[name]
        return Split((torch.from_numpy(ids), torch.from_numpy(mask)), torch.from_numpy(targets))

    history = train_loop(module, split("train"), split("val"), OBJECTIVE, config, description=RECIPE_NAME)
    test_ids, test_mask, test_targets = splits["test"]
    baseline = majority_baseline(test_targets)
    params = {
        **config.hyperparameters(),
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch,
        "n_train": len(train_texts),
        "n_val": len(val_texts),
        "n_test": len(test_texts),
        "vocab_size_learned": tokenizer.get_vocab_size(),
        "majority_baseline_accuracy": baseline,
        "loss": "cross_entropy",
    }
    return FitResult(
        module=module,
        graph=TEXT_GRAPH,
        test_inputs={"input_ids": test_ids, "attention_mask": test_mask},
        test_targets=test_targets,
        params=params,
        dataset_hash=dataset_hash([ids for name in ("train", "val", "test") for ids in splits[name]]),
        history=history,
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
            f"opposite labels. Stratified split: {len(train_texts)} train, {len(val_texts)} validation, "
            f"{len(test_texts)} test. Majority-class baseline accuracy on test: {baseline:.3f}."
        ),
        limitations=(
            f"Knows only the generator's small vocabulary and templates; sequences longer than "
            f"{config.max_length} tokens are truncated."
        ),
        preprocessing=Preprocessing(
            description=(
                "UTF-8 text, one string per row; the runtime tokenizes it with the version's tokenizer.json "
                f"(WordPiece, lower-cased, [CLS] ... [SEP], truncated at {config.max_length} tokens)."
            ),
            tokenizer=TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=config.max_length),
        ),
        extra_files={TOKENIZER_FILE: tokenizer.to_str().encode("utf-8")},
    )


TEXT_BERT = Recipe(
    name=RECIPE_NAME,
    task="classification",
    default_config=TextBertConfig(),
    fit=fit_text_bert,
    primary_metric="accuracy",
    primary_metric_goal="maximize",
)
