"""The synthetic sentiment corpus and its tokenizer: what a text recipe relies on before it trains."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from tokenizers import Tokenizer

from maas.errors import InvalidInput
from maas.training.text_data import (
    LABELS,
    SPECIAL_TOKENS,
    build_wordpiece_tokenizer,
    encode_texts,
    majority_baseline,
    make_sentiment_corpus,
)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray]:
    return make_sentiment_corpus(400, seed=0)


@pytest.fixture(scope="module")
def tokenizer(corpus: tuple[list[str], np.ndarray]) -> Tokenizer:
    return build_wordpiece_tokenizer(corpus[0], vocab_size=500, max_length=32)


def test_same_seed_same_corpus_and_another_seed_another() -> None:
    texts, labels = make_sentiment_corpus(100, seed=7)
    again_texts, again_labels = make_sentiment_corpus(100, seed=7)
    other_texts, _ = make_sentiment_corpus(100, seed=8)

    assert texts == again_texts
    np.testing.assert_array_equal(labels, again_labels)
    assert texts != other_texts


def test_corpus_is_balanced_and_its_baseline_is_one_half(corpus: tuple[list[str], np.ndarray]) -> None:
    texts, labels = corpus

    assert len(texts) == len(labels) == 400
    assert labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [200, 200]
    assert majority_baseline(labels) == 0.5
    assert LABELS == ["negative", "positive"]


@pytest.mark.parametrize("n_samples", [0, 1, 7])
def test_odd_or_empty_corpus_is_refused(n_samples: int) -> None:
    with pytest.raises(InvalidInput, match="n_samples"):
        make_sentiment_corpus(n_samples, seed=0)


def test_majority_baseline_of_an_unbalanced_set() -> None:
    assert majority_baseline(np.array([1, 1, 1, 0])) == 0.75


def test_a_bag_of_words_cannot_tell_some_sentences_apart(corpus: tuple[list[str], np.ndarray]) -> None:
    labels_by_bag: defaultdict[tuple[str, ...], set[int]] = defaultdict(set)
    for text, label in zip(*corpus, strict=True):
        labels_by_bag[tuple(sorted(text.split()))].add(int(label))

    collisions = [bag for bag, labels in labels_by_bag.items() if labels == {0, 1}]

    assert len(collisions) >= 50


def test_negation_word_order_and_contrast_all_occur(corpus: tuple[list[str], np.ndarray]) -> None:
    texts = corpus[0]

    for word in ("not", "never", "hardly", "but", "although"):
        assert any(word in text.split() for text in texts), word


def test_special_tokens_have_bert_ids(tokenizer: Tokenizer) -> None:
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]

    encoding = tokenizer.encode("The movie was NOT good")

    assert encoding.tokens == ["[CLS]", "the", "movie", "was", "not", "good", "[SEP]"]


def test_serialised_tokenizer_gives_identical_ids(
    corpus: tuple[list[str], np.ndarray], tokenizer: Tokenizer
) -> None:
    texts = [*corpus[0][:50], "an unseen word: zyzzyva!", ""]
    restored = Tokenizer.from_str(tokenizer.to_str())

    input_ids, attention_mask = encode_texts(tokenizer, texts, max_length=32)
    restored_ids, restored_mask = _encode_with_stored_settings(restored, texts)
    original_ids, original_mask = _encode_with_stored_settings(tokenizer, texts)

    np.testing.assert_array_equal(restored_ids, input_ids)
    np.testing.assert_array_equal(restored_mask, attention_mask)
    np.testing.assert_array_equal(original_ids, input_ids)
    np.testing.assert_array_equal(original_mask, attention_mask)
    assert input_ids.dtype == attention_mask.dtype == np.int64


def test_encoding_overrides_stored_fixed_padding_and_length_as_serving_does(
    corpus: tuple[list[str], np.ndarray],
) -> None:
    # Shaped like the MiniLM tokenizer.json: padded to a fixed 128, truncated at 128.
    tokenizer = build_wordpiece_tokenizer(corpus[0], max_length=128)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=128)
    long_text = " but ".join(corpus[0][:20])

    input_ids, attention_mask = encode_texts(tokenizer, ["it was good", long_text], max_length=12)

    assert input_ids.shape == attention_mask.shape == (2, 12)
    assert attention_mask[0].tolist() == [1] * 5 + [0] * 7
    assert tokenizer.padding is not None and tokenizer.padding["length"] == 128


def test_batch_pads_to_its_longest_sequence(tokenizer: Tokenizer) -> None:
    input_ids, attention_mask = encode_texts(tokenizer, ["it was good", "the food was not very good"], 32)

    assert input_ids.shape == attention_mask.shape == (2, 8)
    assert attention_mask.tolist() == [[1] * 5 + [0] * 3, [1] * 8]
    assert input_ids[0, 5:].tolist() == [0, 0, 0]


def test_long_text_is_truncated_to_max_length(corpus: tuple[list[str], np.ndarray]) -> None:
    tokenizer = build_wordpiece_tokenizer(corpus[0], max_length=10)
    long_text = " but ".join(corpus[0][:20])

    input_ids, attention_mask = encode_texts(tokenizer, [long_text, "it was good"], max_length=10)

    assert input_ids.shape == (2, 10)
    assert attention_mask[0].tolist() == [1] * 10
    assert input_ids[0, -1] == tokenizer.token_to_id("[SEP]")


def test_an_empty_batch_encodes_to_empty_arrays(tokenizer: Tokenizer) -> None:
    input_ids, attention_mask = encode_texts(tokenizer, [], max_length=32)

    assert input_ids.shape == attention_mask.shape == (0, 0)


def _encode_with_stored_settings(tokenizer: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encodings = tokenizer.encode_batch(texts)
    return (
        np.asarray([encoding.ids for encoding in encodings], dtype=np.int64),
        np.asarray([encoding.attention_mask for encoding in encodings], dtype=np.int64),
    )
