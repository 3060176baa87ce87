"""A synthetic sentiment set that only a model reading word order can solve, and its WordPiece tokenizer.

Generator. Every sentence is built from clauses "<subject> <verb> [negator] [intensifier] <adjective>",
for example "the movie was not very good" or "it was never boring". A clause's polarity is its
adjective's, flipped by a negator (not, never, hardly). Sentences come in pairs with opposite labels:

- a single clause and the same clause with its negation toggled ("the soup was good" / "the soup was
  not good"), which differ by one word;
- "A but B", labelled by B, and its mirror "B but A", where A and B have opposite polarity;
- "although A , B", labelled by B (the main clause), and its mirror "although B , A".

The mirrored pairs hold the same multiset of words with opposite labels, so no bag-of-words model can
beat chance on them; a small transformer with position embeddings learns them. Because every pair
carries one label of each kind, an even `n_samples` is balanced exactly and the majority-class
baseline is 0.5 by construction. Sentences may repeat (the single-clause space is a few tens of
thousands), so a split can share a sentence across train and test; the mirrored pairs keep that from
helping, since a sentence's mirror has the opposite label.

Tokenizer. WordPiece with a vocabulary counted from the caller's texts only (the train split), BERT's
normalisation and pre-tokenisation, and "[CLS] $A [SEP]". `encode_texts` runs the serving runtime's
tokenizer over `Tokenizer.to_str()`, so the ids a model trains and is tested on are the ids it is served.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from maas.errors import InvalidInput
from maas.registry import TokenizerPreprocessing
from maas.runtime import TextTokenizer

LABELS = ["negative", "positive"]
NEGATIVE, POSITIVE = 0, 1

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# Order fixes the ids: [PAD] must be 0, the id the encoder treats as padding.
SPECIAL_TOKENS = [PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN]
PAD_ID = 0
# A label only: the serving tokenizer's settings record names its file, and here there is none.
_TOKENIZER_FILE = "tokenizer.json"

_DETERMINERS = ("the", "this", "that", "our", "my")
_NOUNS = (
    "movie", "food", "service", "acting", "plot", "music", "hotel", "staff", "book", "game",
    "room", "ending", "soundtrack", "waiter", "pizza", "concert", "trip", "class",
)  # fmt: skip
_VERBS = ("was", "is", "seemed", "felt")
_ADJECTIVES = {
    POSITIVE: (
        "good", "great", "excellent", "wonderful", "delightful", "fun", "brilliant", "pleasant",
        "fantastic", "enjoyable",
    ),
    NEGATIVE: (
        "bad", "terrible", "awful", "boring", "dull", "horrible", "disappointing", "bland", "mediocre",
        "poor",
    ),
}  # fmt: skip
_INTENSIFIERS = ("very", "really", "quite", "truly", "extremely")
_NEGATORS = ("not", "never", "hardly")

# Share of pairs by kind, and how often a clause is negated or intensified.
_PAIR_KINDS = ("single", "but", "although")
_PAIR_WEIGHTS = (0.3, 0.45, 0.25)
_P_NEGATED = 0.35
_P_INTENSIFIED = 0.4
_P_IT = 0.1


@dataclass(frozen=True)
class _Clause:
    subject: str
    verb: str
    negator: str | None
    intensifier: str | None
    adjective: str
    adjective_polarity: int

    @property
    def polarity(self) -> int:
        return self.adjective_polarity ^ (self.negator is not None)

    def text(self) -> str:
        words = [self.subject, self.verb, self.negator, self.intensifier, self.adjective]
        return " ".join(word for word in words if word)

    def with_negation_toggled(self, rng: np.random.Generator) -> _Clause:
        negator = None if self.negator else str(rng.choice(_NEGATORS))
        return _Clause(
            self.subject, self.verb, negator, self.intensifier, self.adjective, self.adjective_polarity
        )


def make_sentiment_corpus(n_samples: int, seed: int) -> tuple[list[str], NDArray[np.int64]]:
    """`n_samples` sentences and their labels (0 negative, 1 positive), shuffled; one seed, one corpus."""
    if n_samples < 2 or n_samples % 2:
        raise InvalidInput(f"corpus: n_samples: expected an even integer >= 2, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for _ in range(n_samples // 2):
        for text, label in _opposite_pair(rng):
            texts.append(text)
            labels.append(label)
    order = rng.permutation(n_samples)
    return [texts[i] for i in order], np.asarray(labels, dtype=np.int64)[order]


def majority_baseline(labels: NDArray[np.integer]) -> float:
    """Accuracy of always predicting the most frequent label: the floor any trained model must beat."""
    if labels.size == 0:
        raise InvalidInput("baseline: expected at least one label, got none")
    return float(np.bincount(labels.astype(np.int64)).max() / labels.size)


def build_wordpiece_tokenizer(
    texts: Sequence[str], vocab_size: int = 2000, max_length: int = 32
) -> Tokenizer:
    """A BERT-style WordPiece tokenizer learned from `texts`, truncating at and padding to `max_length`
    at most (padding goes to the longest sequence in a batch)."""
    if max_length < 3:
        raise InvalidInput(f"tokenizer: max_length: expected >= 3 ([CLS], a token, [SEP]), got {max_length}")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = Tokenizer(
        WordPiece(_vocabulary(texts, vocab_size, normalizer, pre_tokenizer), unk_token=UNK_TOKEN)
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID:
        raise AssertionError(f"tokenizer: expected {PAD_TOKEN} at id {PAD_ID}")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS_TOKEN} $A {SEP_TOKEN}",
        special_tokens=[(token, _token_id(tokenizer, token)) for token in (CLS_TOKEN, SEP_TOKEN)],
    )
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD_TOKEN)
    return tokenizer


def _vocabulary(
    texts: Sequence[str],
    vocab_size: int,
    normalizer: normalizers.Normalizer,
    pre_tokenizer: pre_tokenizers.PreTokenizer,
) -> dict[str, int]:
    """Special tokens, every character (alone and as a `##` continuation), then the most frequent words.

    Built here rather than by `WordPieceTrainer`, whose vocabulary depends on hash-map iteration order and
    changes from run to run on identical input (huggingface/tokenizers#1794): one seed must be one set of
    token ids, or it cannot be one model. Ties are broken alphabetically. The characters guarantee any
    word still splits into known pieces, so [UNK] only stands for characters never seen in training."""
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = normalizer.normalize_str(text)
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalized))
    characters = sorted({character for word in counts for character in word})
    tokens = [*SPECIAL_TOKENS, *characters, *(f"##{character}" for character in characters)]
    known = set(tokens)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(tokens) >= vocab_size:
            break
        if word not in known:
            tokens.append(word)
            known.add(word)
    return {token: index for index, token in enumerate(tokens)}


def encode_texts(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """int64 `input_ids` and `attention_mask`, [N, S], S the longest encoding and at most `max_length`.

    Encoded by the serving runtime's own tokenizer over `tokenizer.to_str()`, so training and test data
    get exactly the ids a deployed model will be fed: `max_length` must be the one the manifest records,
    and any truncation or fixed padding stored in the tokenizer is overridden the way serving overrides it.
    """
    preprocessing = TokenizerPreprocessing(tokenizer_file=_TOKENIZER_FILE, max_length=max_length)
    serving = TextTokenizer(tokenizer.to_str().encode("utf-8"), preprocessing)
    feeds = serving.encode(np.asarray(list(texts), dtype=object))
    return feeds[preprocessing.input_ids], feeds[preprocessing.attention_mask]


def _opposite_pair(rng: np.random.Generator) -> tuple[tuple[str, int], tuple[str, int]]:
    kind = _PAIR_KINDS[rng.choice(len(_PAIR_KINDS), p=_PAIR_WEIGHTS)]
    first = _clause(rng, polarity=int(rng.integers(2)))
    if kind == "single":
        second = first.with_negation_toggled(rng)
        return (first.text(), first.polarity), (second.text(), second.polarity)
    second = _clause(rng, polarity=1 - first.polarity)
    if kind == "but":
        return (
            (f"{first.text()} but {second.text()}", second.polarity),
            (f"{second.text()} but {first.text()}", first.polarity),
        )
    return (
        (f"although {first.text()} , {second.text()}", second.polarity),
        (f"although {second.text()} , {first.text()}", first.polarity),
    )


def _clause(rng: np.random.Generator, polarity: int) -> _Clause:
    """A random clause whose overall polarity is `polarity`, negated or not."""
    negated = bool(rng.random() < _P_NEGATED)
    adjective_polarity = polarity ^ negated
    subject = "it" if rng.random() < _P_IT else f"{rng.choice(_DETERMINERS)} {rng.choice(_NOUNS)}"
    return _Clause(
        subject=subject,
        verb=str(rng.choice(_VERBS)),
        negator=str(rng.choice(_NEGATORS)) if negated else None,
        intensifier=str(rng.choice(_INTENSIFIERS)) if rng.random() < _P_INTENSIFIED else None,
        adjective=str(rng.choice(_ADJECTIVES[adjective_polarity])),
        adjective_polarity=adjective_polarity,
    )


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise AssertionError(f"tokenizer: expected {token} in the trained vocabulary")
    return token_id
