"""TextTokenizer: a published tokenizer.json turned into the id tensors a text model's graph takes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from maas.errors import IntegrityError, InvalidInput
from maas.registry.manifest import TokenizerPreprocessing
from maas.runtime import TextTokenizer
from maas.runtime.text import TokenizedTexts
from tests.support.models import TOKENIZER_FILE, WORDPIECE_VOCAB, wordpiece_tokenizer_json

VOCAB = {token: index for index, token in enumerate(WORDPIECE_VOCAB)}
PAD, UNK, CLS, SEP = (VOCAB[token] for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"))
MAX_LENGTH = 8


def preprocessing(**overrides: object) -> TokenizerPreprocessing:
    return TokenizerPreprocessing.model_validate(
        {"tokenizer_file": TOKENIZER_FILE, "max_length": MAX_LENGTH, **overrides}
    )


def texts(*items: str | bytes | object) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


@pytest.fixture(scope="module")
def tokenizer_json() -> bytes:
    return wordpiece_tokenizer_json()


@pytest.fixture
def tokenizer(tokenizer_json: bytes) -> TextTokenizer:
    return TextTokenizer(tokenizer_json, preprocessing())


def ids(*words: str) -> list[int]:
    return [VOCAB[word] for word in words]


def test_a_batch_is_bert_encoded_and_padded_to_its_longest_text(tokenizer: TextTokenizer) -> None:
    feeds = tokenizer.encode(texts("The cat sat.", "Hello", "dogs"))

    assert sorted(feeds) == ["attention_mask", "input_ids"]
    assert feeds["input_ids"].dtype == np.int64 and feeds["attention_mask"].dtype == np.int64
    assert feeds["input_ids"].tolist() == [
        [CLS, *ids("the", "cat", "sat", "."), SEP],
        [CLS, *ids("hello"), SEP, PAD, PAD, PAD],
        [CLS, *ids("dog", "##s"), SEP, PAD, PAD],
    ]
    assert feeds["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
    ]


def test_an_empty_string_is_cls_then_sep(tokenizer: TextTokenizer) -> None:
    feeds = tokenizer.encode(texts(""))
    assert feeds["input_ids"].tolist() == [[CLS, SEP]]
    assert feeds["attention_mask"].tolist() == [[1, 1]]


def test_long_texts_are_truncated_to_max_length_tokens_special_tokens_included(
    tokenizer: TextTokenizer,
) -> None:
    feeds = tokenizer.encode(texts("the cat sat on the mat the dog sat on the mat", "a dog"))
    assert feeds["input_ids"].shape == (2, MAX_LENGTH)
    assert feeds["input_ids"][0].tolist() == [CLS, *ids("the", "cat", "sat", "on", "the", "mat"), SEP]
    assert feeds["attention_mask"].sum(axis=1).tolist() == [MAX_LENGTH, 4]


def test_utf8_bytes_and_str_give_the_same_ids(tokenizer: TextTokenizer) -> None:
    as_bytes = tokenizer.encode(texts("Straße".encode(), b"hello world"))
    as_str = tokenizer.encode(texts("Straße", "hello world"))
    assert as_bytes["input_ids"].tolist() == as_str["input_ids"].tolist()
    assert as_str["input_ids"][0].tolist()[:3] == [CLS, VOCAB["straße"], SEP]


def test_unknown_words_become_unk(tokenizer: TextTokenizer) -> None:
    assert tokenizer.encode(texts("zebra"))["input_ids"].tolist() == [[CLS, UNK, SEP]]


@pytest.mark.parametrize(
    ("batch", "index", "got"),
    [
        pytest.param(texts("ok", b"secret \xff\xfe value"), 1, "got invalid bytes", id="invalid-utf8-bytes"),
        pytest.param(texts(b"\xc3", "ok"), 0, "got invalid bytes", id="truncated-utf8-sequence"),
        pytest.param(texts("ok", "ok", "secret \ud800"), 2, "lone surrogate", id="lone-surrogate"),
        pytest.param(texts("ok", 42), 1, "got int", id="not-text"),
        pytest.param(texts(None), 0, "got NoneType", id="null"),
    ],
)
def test_text_that_is_not_utf8_is_a_400_naming_the_input_and_element_but_not_the_value(
    tokenizer: TextTokenizer, batch: np.ndarray, index: int, got: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        tokenizer.encode(batch)
    message = caught.value.message
    assert caught.value.status == 400
    assert f"input 'text': element {index}: expected UTF-8 text" in message
    assert got in message
    assert "secret" not in message and "42" not in message


def test_a_batch_must_be_one_dimensional(tokenizer: TextTokenizer) -> None:
    with pytest.raises(InvalidInput, match=r"input 'text': expected a batch of texts of shape \[-1\]"):
        tokenizer.encode(np.array([["a", "b"]], dtype=object))


def test_an_empty_batch_gives_empty_tensors(tokenizer: TextTokenizer) -> None:
    feeds = tokenizer.encode(texts())
    assert feeds["input_ids"].shape == (0, 0) and feeds["attention_mask"].shape == (0, 0)


def test_declared_token_type_ids_are_fed_as_zeros_for_one_sequence(tokenizer_json: bytes) -> None:
    tokenizer = TextTokenizer(tokenizer_json, preprocessing(token_type_ids="token_type_ids"))
    feeds = tokenizer.encode(texts("hello world", "a"))
    assert sorted(feeds) == ["attention_mask", "input_ids", "token_type_ids"]
    assert feeds["token_type_ids"].dtype == np.int64
    assert feeds["token_type_ids"].tolist() == [[0] * 4, [0] * 4]


def test_custom_input_names_are_honoured(tokenizer_json: bytes) -> None:
    tokenizer = TextTokenizer(
        tokenizer_json, preprocessing(text_input="sentence", input_ids="ids", attention_mask="mask")
    )
    assert tokenizer.input_name == "sentence"
    assert sorted(tokenizer.encode(texts("a"))) == ["ids", "mask"]
    with pytest.raises(InvalidInput, match="input 'sentence': element 0"):
        tokenizer.encode(texts(b"\xff"))


def test_the_tokenizers_own_padding_settings_give_the_pad_id_but_not_a_fixed_length(
    tokenizer_json: bytes,
) -> None:
    # Saved as a training pipeline might: padding to a fixed 32 with a non-zero pad id.
    document = json.loads(tokenizer_json)
    document["padding"] = {
        "strategy": {"Fixed": 32},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": VOCAB["[MASK]"],
        "pad_type_id": 0,
        "pad_token": "[MASK]",
    }
    tokenizer = TextTokenizer(json.dumps(document).encode(), preprocessing())
    feeds = tokenizer.encode(texts("hello world", "a"))
    assert feeds["input_ids"].tolist() == [
        [CLS, *ids("hello", "world"), SEP],
        [CLS, *ids("a"), SEP, VOCAB["[MASK]"]],
    ]


def test_without_padding_settings_the_pad_token_is_looked_up_in_the_vocabulary() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "a": 4, "b": 5}
    built = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    built.pre_tokenizer = pre_tokenizers.Whitespace()
    built.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tokenizer = TextTokenizer(built.to_str().encode(), preprocessing())
    assert tokenizer.encode(texts("a b", "a"))["input_ids"].tolist() == [[1, 4, 5, 2], [1, 4, 2, 3]]


def test_a_graph_with_a_fixed_sequence_length_gets_exactly_that_many_tokens(tokenizer_json: bytes) -> None:
    tokenizer = TextTokenizer(tokenizer_json, preprocessing(max_length=64), sequence_length=5)
    feeds = tokenizer.encode(texts("a", "the cat sat on the mat"))
    assert feeds["input_ids"].tolist() == [
        [CLS, *ids("a"), SEP, PAD, PAD],
        [CLS, *ids("the", "cat", "sat"), SEP],
    ]


def test_a_file_that_is_not_a_tokenizer_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match=r"tokenizer file 'tokenizer\.json': expected a Hugging Face"):
        TextTokenizer(b'{"not": "a tokenizer"}', preprocessing())


# ---- a long text costs what the model reads of it, with the ids its whole text gives

# Texts that stress where a prefix may be cut: inside a word, a grapheme, an added token or whitespace.
TRICKY_TEXTS = {
    "repeated-words": "word " * 2_000,
    "one-long-word": "a" * 20_000,
    "long-words-over-wordpiece-limit": ("supercalifragilistic" * 8 + " ") * 300,
    "cjk-without-spaces": "我爱自然语言处理和机器学习" * 800,
    "combining-marks": "e\u0301\u0302\u0303" * 3_000,
    "decomposed-accents-in-words": "cafe\u0301 nai\u0308ve " * 1_000,
    "only-spaces": " " * 20_000,
    "only-mixed-whitespace": "\t\n \r\u3000" * 4_000,
    "whitespace-then-words": " " * 9_000 + "hello world " * 300,
    "emoji": "👍🏽 " * 3_000,
    "emoji-zwj-without-spaces": "👩\u200d👩\u200d👧" * 3_000,
    "added-tokens-in-text": "hello [MASK] world [SEP][CLS] " * 600,
    "added-tokens-back-to-back": "[MASK]" * 3_000,
    "broken-added-tokens": "[MAS [MASK [SEP" * 1_000,
    "punctuation": "!?.,;:" * 3_000,
    "words-and-punctuation": "a.b,c;d!e " * 2_000,
    "control-characters": "\x00\x01word\x7f " * 2_000,
    "digits": "1234567890" * 2_000,
    "german": "Der schnelle braune Fuchs springt über den faulen Hund. Straße ÄÖÜ " * 300,
    "zero-width-spaces-then-a-word": "\u200b" * 9_000 + " word",
    "short": "the cat sat",
    "empty": "",
}


def text_bert_tokenizer_json() -> bytes:
    from maas.training.text_data import build_wordpiece_tokenizer, make_sentiment_corpus

    corpus, _ = make_sentiment_corpus(200, 3)
    return build_wordpiece_tokenizer(corpus, vocab_size=300, max_length=32).to_str().encode()


def minilm_tokenizer_json() -> bytes:
    from maas.training.encoder import minilm_path

    return (minilm_path() / "tokenizer.json").read_bytes()


@pytest.fixture(scope="module", params=["text-bert", "minilm-embed"])
def served_tokenizer_json(request: pytest.FixtureRequest) -> bytes:
    return text_bert_tokenizer_json() if request.param == "text-bert" else minilm_tokenizer_json()


def full_text_reference(tokenizer_json: bytes, items: list[str], max_length: int) -> list[Any]:
    """Every text tokenized whole by `tokenizers` itself, truncated and batch-padded: what maas must give."""
    from tokenizers import Tokenizer

    reference = Tokenizer.from_str(tokenizer_json.decode())
    reference.enable_truncation(max_length=max_length)
    reference.enable_padding(pad_id=0, pad_token="[PAD]")
    return list(reference.encode_batch(items))


def assert_same_encodings(got: TokenizedTexts, expected: list[Any]) -> None:
    assert got.feeds["input_ids"].tolist() == [e.ids for e in expected]
    assert got.feeds["attention_mask"].tolist() == [e.attention_mask for e in expected]
    content = [
        [
            i
            for i, (s, a) in enumerate(zip(e.special_tokens_mask, e.attention_mask, strict=True))
            if not s and a
        ]
        for e in expected
    ]
    assert got.content == content
    assert got.tokens == [[e.tokens[i] for i in own] for e, own in zip(expected, content, strict=True)]


@pytest.mark.parametrize("max_length", [8, 32, 256])
def test_a_batch_of_tricky_texts_gets_the_ids_of_the_whole_texts(
    served_tokenizer_json: bytes, max_length: int
) -> None:
    tokenizer = TextTokenizer(served_tokenizer_json, preprocessing(max_length=max_length))
    items = list(TRICKY_TEXTS.values())

    got = tokenizer.encode_tokens(texts(*items))

    assert_same_encodings(got, full_text_reference(served_tokenizer_json, items, max_length))
    # Most of these texts are cut: the prefix is what was tokenized first, not the whole text.
    assert sum(len(item) > tokenizer.prefix_chars for item in items) >= len(items) - 3


@pytest.mark.parametrize("prefix_chars", [1, 2, 3, 5, 7, 13, 40])
@pytest.mark.parametrize("name", list(TRICKY_TEXTS))
def test_whatever_the_first_cut_each_text_gets_the_ids_of_its_whole_text(
    served_tokenizer_json: bytes, name: str, prefix_chars: int
) -> None:
    # A tiny first prefix puts the first cut at every kind of place a text has: mid-word, mid-grapheme,
    # mid-[MASK], in whitespace; each try that is not settled grows it, up to the whole text.
    tokenizer = TextTokenizer(served_tokenizer_json, preprocessing(max_length=8))
    tokenizer.prefix_chars = prefix_chars
    text = TRICKY_TEXTS[name][:3_000]

    got = tokenizer.encode_tokens(texts(text, text[: prefix_chars + 1], text[:prefix_chars]))

    expected = full_text_reference(
        served_tokenizer_json, [text, text[: prefix_chars + 1], text[:prefix_chars]], 8
    )
    assert_same_encodings(got, expected)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_text_at_the_edge_of_the_prefix_gets_the_ids_of_its_whole_text(
    served_tokenizer_json: bytes, offset: int
) -> None:
    tokenizer = TextTokenizer(served_tokenizer_json, preprocessing(max_length=32))
    text = ("word " * 10_000)[: tokenizer.prefix_chars + offset]

    got = tokenizer.encode_tokens(texts(text, "a"))

    assert_same_encodings(got, full_text_reference(served_tokenizer_json, [text, "a"], 32))


def piece_lengths_seen(tokenizer: TextTokenizer) -> list[int]:
    """A list that grows by the length of each piece of text the tokenizer hands to its encoder."""
    seen: list[int] = []
    encode = tokenizer._encode

    def recording(pieces: list[str]) -> list[Any]:
        seen.extend(len(piece) for piece in pieces)
        return encode(pieces)

    tokenizer._encode = recording  # type: ignore[method-assign,assignment]
    return seen


def test_a_long_text_is_tokenized_from_a_prefix_not_whole(served_tokenizer_json: bytes) -> None:
    tokenizer = TextTokenizer(served_tokenizer_json, preprocessing(max_length=32))
    seen = piece_lengths_seen(tokenizer)
    tokenizer.encode(texts("word " * 50_000))

    assert seen == [tokenizer.prefix_chars]


def test_a_text_no_prefix_settles_is_tokenized_whole_in_a_few_tries(served_tokenizer_json: bytes) -> None:
    tokenizer = TextTokenizer(served_tokenizer_json, preprocessing(max_length=32))
    seen = piece_lengths_seen(tokenizer)
    text = "a" * 256 * 1024  # one word: no prefix can tell where it ends

    got = tokenizer.encode_tokens(texts(text))

    assert seen[-1] == len(text) and len(seen) <= 6
    assert seen == sorted(seen)
    assert_same_encodings(got, full_text_reference(served_tokenizer_json, [text], 32))


@pytest.mark.parametrize("direction", ["Left", "Right"])
def test_a_batch_of_long_texts_is_padded_in_the_tokenizers_own_direction(
    served_tokenizer_json: bytes, direction: str
) -> None:
    document = json.loads(served_tokenizer_json)
    document["padding"] = {
        "strategy": "BatchLongest",
        "direction": direction,
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    tokenizer_json = json.dumps(document).encode()
    tokenizer = TextTokenizer(tokenizer_json, preprocessing(max_length=16))
    items = [TRICKY_TEXTS["german"], "a cat", "", TRICKY_TEXTS["added-tokens-in-text"]]

    got = tokenizer.encode_tokens(texts(*items))

    from tokenizers import Tokenizer

    reference = Tokenizer.from_str(tokenizer_json.decode())
    reference.enable_truncation(max_length=16)
    reference.enable_padding(pad_id=0, pad_token="[PAD]", direction=direction.lower())
    assert_same_encodings(got, list(reference.encode_batch(items)))


def test_long_texts_for_a_graph_of_fixed_length_get_the_ids_of_their_whole_texts(
    served_tokenizer_json: bytes,
) -> None:
    tokenizer = TextTokenizer(served_tokenizer_json, preprocessing(max_length=64), sequence_length=12)
    items = [TRICKY_TEXTS["repeated-words"], "a", TRICKY_TEXTS["cjk-without-spaces"]]

    got = tokenizer.encode_tokens(texts(*items))

    from tokenizers import Tokenizer

    reference = Tokenizer.from_str(served_tokenizer_json.decode())
    reference.enable_truncation(max_length=12)
    reference.enable_padding(pad_id=0, pad_token="[PAD]", length=12)
    assert_same_encodings(got, list(reference.encode_batch(items)))
