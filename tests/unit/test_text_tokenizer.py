"""TextTokenizer: a published tokenizer.json turned into the id tensors a text model's graph takes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maas.errors import IntegrityError, InvalidInput
from maas.registry.manifest import TokenizerPreprocessing
from maas.runtime import TextTokenizer
from tests.onnx_models import TOKENIZER_FILE, WORDPIECE_VOCAB, wordpiece_tokenizer_json

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
