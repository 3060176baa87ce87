"""Incremental detokenization: characters split across tokens are never emitted half made, leading spaces
survive a SentencePiece tokenizer, and logprobs' token bytes are the token's own bytes. The tokenizers are
built here with `tokenizers`, small enough to read."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from maas.generation import Finished, SamplingParams, TextDelta, TextGenerator
from maas.generation.detokenizer import IncrementalDetokenizer, TokenTexts

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# U+6771 U+4EAC: three UTF-8 bytes each.
TOKYO = "東京"


def byte_tokenizer() -> Tokenizer:
    """Byte-level BPE with no merges: the three specials, then one token per byte (ids 3 to 258), so every
    multi-byte character spans tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    vocab = {token: index for index, token in enumerate(SPECIALS)}
    vocab.update({char: len(SPECIALS) + _byte_of(char) for char in alphabet})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIALS))
    return tokenizer


def _byte_of(char: str) -> int:
    # ByteLevel's stand-ins: printable bytes as themselves, the others from U+0100 on.
    return BYTE_OF[char]


def _byte_table() -> dict[str, int]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {chr(byte): byte for byte in printable}
    others = [byte for byte in range(256) if byte not in printable]
    table.update({chr(256 + index): byte for index, byte in enumerate(others)})
    return table


BYTE_OF = _byte_table()


def sentencepiece_tokenizer() -> Tokenizer:
    """Llama-style: Metaspace words, byte fallback, and a decoder that strips the first token's space."""
    vocab = {"<unk>": 0, "▁Hello": 1, "▁world": 2, "!": 3, "<0xE6>": 4, "<0x9D>": 5, "<0xB1>": 6}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return tokenizer


def pieces(tokenizer: Tokenizer, prompt: list[int], ids: list[int]) -> tuple[list[str], str]:
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    return [detokenizer.push(token) for token in ids], detokenizer.flush()


def test_a_character_split_across_tokens_is_emitted_once_whole() -> None:
    tokenizer = byte_tokenizer()
    ids = tokenizer.encode(f"a{TOKYO}!", add_special_tokens=False).ids
    assert len(ids) == 8

    emitted, rest = pieces(tokenizer, tokenizer.encode("hi ").ids, ids)

    assert emitted == ["a", "", "", "東", "", "", "京", "!"]
    assert rest == ""


def test_bytes_that_never_complete_a_character_are_flushed_as_the_replacement_character() -> None:
    tokenizer = byte_tokenizer()
    ids = tokenizer.encode(TOKYO, add_special_tokens=False).ids[:2]

    emitted, rest = pieces(tokenizer, [], ids)

    assert emitted == ["", ""]
    assert rest == tokenizer.decode(ids) == "\ufffd"


def test_special_tokens_add_no_text() -> None:
    tokenizer = byte_tokenizer()
    ids = [*tokenizer.encode("ok", add_special_tokens=False).ids, SPECIALS.index("<|im_start|>")]

    emitted, rest = pieces(tokenizer, [], ids)

    assert "".join(emitted) + rest == "ok"


def test_a_sentencepiece_word_keeps_its_leading_space_after_the_first() -> None:
    tokenizer = sentencepiece_tokenizer()
    assert tokenizer.decode([2]) == "world"  # alone, the space is stripped

    emitted, _ = pieces(tokenizer, [1], [2, 3, 2])

    assert emitted == [" world", "!", " world"]


def test_a_sentencepiece_byte_fallback_character_waits_for_its_last_byte() -> None:
    emitted, _ = pieces(sentencepiece_tokenizer(), [1], [4, 5, 6])

    assert emitted == ["", "", "東"]


def test_token_bytes_are_the_tokens_own_bytes() -> None:
    byte_level = TokenTexts(byte_tokenizer())
    first_of_tokyo = TOKYO.encode()[0]
    fallback = TokenTexts(sentencepiece_tokenizer())

    assert byte_level.bytes_of(3 + ord(" ")) == b" "
    assert byte_level.bytes_of(3 + first_of_tokyo) == bytes([first_of_tokyo])
    assert byte_level.text_of(3 + first_of_tokyo) == "\ufffd"
    assert byte_level.bytes_of(SPECIALS.index("<|im_end|>")) == b"<|im_end|>"
    assert byte_level.bytes_of(100_000) == b""
    assert fallback.bytes_of(4) == b"\xe6"
    assert fallback.bytes_of(2) == b"world"


def test_generation_with_a_tokenizer_that_splits_characters_never_yields_a_broken_one(
    tiny_generator: TextGenerator,
) -> None:
    # The tiny decoder writes random ids, about half of them bytes >= 0x80 under this tokenizer: some runs
    # of them make whole characters, the rest stray bytes.
    generator = TextGenerator(tiny_generator.manifest, tiny_generator.decoder, byte_tokenizer(), None)
    whole_characters = 0
    for seed in range(10):
        params = SamplingParams(max_tokens=200, top_k=300, seed=seed)
        events = list(generator.generate([3 + ord("a")] * 4, params))
        assert isinstance(events[-1], Finished)
        deltas = [event for event in events if isinstance(event, TextDelta)]
        ids = [token for delta in deltas for token in delta.token_ids]
        text = "".join(delta.text for delta in deltas)

        # Streaming lost or broke nothing: the deltas add up to decoding everything at once, so no delta
        # emitted U+FFFD for bytes a later token completed.
        assert text == generator.decode(ids)
        whole_characters += sum(ord(char) > 0x7F and char != "\ufffd" for char in text)
    assert whole_characters > 0, "no character spanned tokens"


@pytest.mark.parametrize("window", [0, 1, 3])
def test_any_prompt_context_gives_the_same_text(window: int) -> None:
    tokenizer = byte_tokenizer()
    prompt = tokenizer.encode("context: ", add_special_tokens=False).ids[-window:] if window else []
    ids = tokenizer.encode(f"say {TOKYO} twice", add_special_tokens=False).ids

    emitted, rest = pieces(tokenizer, prompt, ids)

    assert "".join(emitted) + rest == f"say {TOKYO} twice"
