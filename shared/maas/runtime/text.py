"""Text in, token ids out: a published `tokenizer.json` applied with Hugging Face `tokenizers` alone.

`tokenizers` is imported when a text model loads, never at import time, so functions and models that
take no text don't pay for it at cold start.

A model reads at most `max_length` tokens of a text, so a text's cost is bounded by that, not by its length:
each text is tokenized from a prefix just long enough to be sure of its first `max_length` tokens (see
`TextTokenizer._bounded`), and the ids are those the whole text would give.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from maas.errors import InvalidInput
from maas.registry.integrity import integrity_failure
from maas.registry.manifest import TokenizerPreprocessing

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

# BERT's convention, for a tokenizer.json that carries no padding settings of its own.
DEFAULT_PAD_TOKEN = "[PAD]"
DEFAULT_PAD_ID = 0
MASK_TOKEN = "[MASK]"
# The first prefix of a long text holds this many characters per token the model keeps: English averages
# 4 to 5 characters a word piece, so most texts are settled by the first try.
PREFIX_CHARS_PER_TOKEN = 8
# A prefix that turns out too short is tried again this many times longer, up to the whole text: a text
# needs at most log4(256 KiB / prefix) tries, and the tries together cost under 4/3 of the last one.
PREFIX_GROWTH = 4
# Texts handed to `tokenizers` at once: their encodings are held only until their ids are copied out.
TEXTS_PER_ENCODE = 256


@dataclass(frozen=True, eq=False)
class TokenizedTexts:
    feeds: dict[str, npt.NDArray[Any]]
    # Per text: the positions of its own tokens (not special, not padding), and those tokens.
    content: list[list[int]]
    tokens: list[list[str]]


@dataclass(frozen=True, slots=True)
class _Padding:
    pad_id: int
    pad_type_id: int
    direction: str
    # The graph's fixed sequence length; None pads to the longest text of the batch.
    length: int | None


class TextTokenizer:
    """Turns a batch of strings into the graph's id tensors: truncated at `max_length` tokens (special
    tokens included) and padded to the longest text in the batch, or to the graph's fixed length."""

    def __init__(
        self,
        tokenizer_json: bytes,
        preprocessing: TokenizerPreprocessing,
        *,
        sequence_length: int | None = None,
    ) -> None:
        self.preprocessing = preprocessing
        self.sequence_length = sequence_length
        self._tokenizer, self._padding = _configured(tokenizer_json, preprocessing, sequence_length)
        truncation = self._tokenizer.truncation or {}
        self.max_length = int(truncation.get("max_length", preprocessing.max_length))
        # An added token ([MASK], [CLS]...) written in the text is matched before anything else, so a cut
        # through one changes how the characters just before the cut split: the kept tokens must end at
        # least the longest one's length before the cut.
        self._added_token_chars = max(
            (len(token.content) for token in self._tokenizer.get_added_tokens_decoder().values()),
            default=0,
        )
        self.prefix_chars = self.max_length * PREFIX_CHARS_PER_TOKEN + self._added_token_chars

    @property
    def input_name(self) -> str:
        return self.preprocessing.text_input

    def encode(self, texts: npt.NDArray[Any]) -> dict[str, npt.NDArray[np.int64]]:
        """`texts` is a [N] array of str or UTF-8 bytes; returns each graph input as an int64 [N, L] array."""
        return self._tokenize(self._strings(texts), with_tokens=False).feeds

    def encode_tokens(self, texts: npt.NDArray[Any]) -> TokenizedTexts:
        """The graph's id tensors, with each text's own tokens and their positions."""
        return self._tokenize(self._strings(texts), with_tokens=True)

    @property
    def pad_id(self) -> int:
        return self._padding.pad_id

    @property
    def mask_id(self) -> int | None:
        """The id of the tokenizer's mask token ([MASK] in BERT's vocabulary), if it has one."""
        found = self._tokenizer.token_to_id(MASK_TOKEN)
        return None if found is None else int(found)

    def _strings(self, texts: npt.NDArray[Any]) -> list[str]:
        if texts.ndim != 1:
            raise InvalidInput(
                f"input '{self.input_name}': expected a batch of texts of shape [-1], "
                f"got {texts.ndim} dimensions"
            )
        strings: list[str] = []
        for index, item in enumerate(texts.tolist()):
            if isinstance(item, bytes):
                try:
                    strings.append(item.decode("utf-8"))
                except UnicodeDecodeError:
                    raise InvalidInput(
                        f"input '{self.input_name}': element {index}: expected UTF-8 text, got invalid bytes"
                    ) from None
            elif isinstance(item, str):
                strings.append(item)
            else:
                raise InvalidInput(
                    f"input '{self.input_name}': element {index}: expected UTF-8 text, "
                    f"got {type(item).__name__}"
                )
        return strings

    def _tokenize(self, strings: list[str], *, with_tokens: bool) -> TokenizedTexts:
        """Each text truncated, then the batch padded as `tokenizers` pads one (to its longest text, or to
        the graph's length), straight into the id matrices.

        Texts are encoded TEXTS_PER_ENCODE at a time and only their ids kept: an encoding of `tokenizers`
        holds every token's string, offsets and word, and its truncated remainder, about 200 bytes a token,
        so 4,096 encodings at once would hold over a hundred megabytes to yield a few."""
        self._check_encodable(strings)
        count, padding = len(strings), self._padding
        capacity = padding.length if padding.length is not None else self.max_length
        ids = np.full((count, capacity), padding.pad_id, dtype=np.int64)
        attention = np.zeros((count, capacity), dtype=np.int64)
        type_ids = np.full((count, capacity), padding.pad_type_id, dtype=np.int64)
        lengths = np.zeros(count, dtype=np.int64)
        content: list[list[int]] = []
        tokens: list[list[str]] = []
        for start in range(0, count, TEXTS_PER_ENCODE):
            for row, encoding in enumerate(self._bounded(strings[start : start + TEXTS_PER_ENCODE]), start):
                length = len(encoding.ids)
                lengths[row] = length
                ids[row, :length] = encoding.ids
                attention[row, :length] = encoding.attention_mask
                type_ids[row, :length] = encoding.type_ids
                if with_tokens:
                    # Not a special token ([CLS], [SEP]) and not padding: what an explanation attributes to.
                    own = [
                        position
                        for position, (special, attended) in enumerate(
                            zip(encoding.special_tokens_mask, encoding.attention_mask, strict=True)
                        )
                        if not special and attended
                    ]
                    every = encoding.tokens
                    content.append(own)
                    tokens.append([every[position] for position in own])
        width = padding.length if padding.length is not None else int(lengths.max(initial=0))
        matrices = [np.ascontiguousarray(matrix[:, :width]) for matrix in (ids, attention, type_ids)]
        if padding.direction == "left":
            for row, length in enumerate(lengths.tolist()):
                shift = width - length
                if shift:
                    for matrix in matrices:
                        matrix[row] = np.roll(matrix[row], shift)
                    if with_tokens:
                        content[row] = [position + shift for position in content[row]]
        pre = self.preprocessing
        feeds = {pre.input_ids: matrices[0], pre.attention_mask: matrices[1]}
        if pre.token_type_ids is not None:
            # The tokenizer's own type ids: zeros for one sequence under BERT's template, and whatever a
            # different template assigns otherwise, exactly as at training time.
            feeds[pre.token_type_ids] = matrices[2]
        return TokenizedTexts(feeds=feeds, content=content, tokens=tokens)

    def _bounded(self, strings: list[str]) -> list[Encoding]:
        """What encoding each whole text would give, from the shortest prefix of it that settles it.

        `tokenizers` truncates only after it has normalized, split and encoded the whole text, and keeps
        the rest as overflowing encodings: a 256 KiB text costs megabytes to yield 32 tokens. A prefix
        settles a text when its truncated encoding ends before the prefix's last word (which the cut may
        have split, or which may go on past it) and before any added token the cut may have split:
        normalization and pre-tokenization act word by word, so the words before are those of the whole
        text, and so are their tokens. Otherwise the prefix grows, up to the whole text."""
        encodings: list[Encoding | None] = [None] * len(strings)
        pending = list(range(len(strings)))
        budget = self.prefix_chars
        while pending:
            pieces = [strings[i] if len(strings[i]) <= budget else strings[i][:budget] for i in pending]
            unsettled: list[int] = []
            for index, piece, encoding in zip(pending, pieces, self._encode(pieces), strict=True):
                whole = len(piece) == len(strings[index])
                if whole or self._settled(encoding, len(piece)):
                    encodings[index] = encoding
                else:
                    unsettled.append(index)
            pending = unsettled
            budget *= PREFIX_GROWTH
        return [encoding for encoding in encodings if encoding is not None]

    def _settled(self, encoding: Encoding, cut: int) -> bool:
        kept = [
            (word, end)
            for word, (_, end) in zip(encoding.word_ids, encoding.offsets, strict=True)
            if word is not None
        ]
        last_kept_word, kept_end = max(kept, default=(-1, 0))
        last_word = max(
            (
                word
                for part in (encoding, *encoding.overflowing)
                for word in part.word_ids
                if word is not None
            ),
            default=-1,
        )
        return last_kept_word < last_word and kept_end <= cut - self._added_token_chars

    def _encode(self, strings: list[str]) -> list[Encoding]:
        encodings: list[Encoding] = self._tokenizer.encode_batch(strings)
        return encodings

    def _check_encodable(self, strings: list[str]) -> None:
        # A str holding a lone surrogate (JSON allows "\ud800") is the one thing that gets this far and is
        # not UTF-8. isascii() is a flag lookup, so only non-ASCII texts are encoded to find one.
        for index, text in enumerate(strings):
            if text.isascii():
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(
                    f"input '{self.input_name}': element {index}: expected UTF-8 text, "
                    "got a string with a lone surrogate"
                ) from None


def _configured(
    tokenizer_json: bytes, preprocessing: TokenizerPreprocessing, sequence_length: int | None
) -> tuple[Tokenizer, _Padding]:
    """The tokenizer, truncating at the model's length, and how its batches are padded (done by
    `TextTokenizer`, since texts are encoded from prefixes of different lengths)."""
    # tokenizers' thread pool costs more than it saves on Lambda's one or two vCPUs: a batch of 32 texts
    # tokenized in 2.4 ms without it and 4.3 ms with it (make bench). A deployment may still turn it on.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    where = f"tokenizer file '{preprocessing.tokenizer_file}'"
    try:
        tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
        # The parser's text can quote the stored file: it goes to the log, not to the caller.
        raise integrity_failure(
            f"{where}: expected a Hugging Face tokenizer.json, got one it cannot read", str(exc)
        ) from None
    max_length = preprocessing.max_length
    if sequence_length is not None:
        max_length = min(max_length, sequence_length)
    # Right truncation (the default): a text's first tokens, which is what makes a prefix enough.
    tokenizer.enable_truncation(max_length=max_length)
    # Keep the tokenizer's own pad token and type id, but not its length: a fixed length saved for
    # training would make every short request pay for the longest one.
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token", DEFAULT_PAD_TOKEN)
    pad_id = padding.get("pad_id")
    if pad_id is None:
        found = tokenizer.token_to_id(pad_token)
        pad_id = DEFAULT_PAD_ID if found is None else found
    tokenizer.no_padding()
    return tokenizer, _Padding(
        pad_id=int(pad_id),
        pad_type_id=int(padding.get("pad_type_id", 0)),
        direction=str(padding.get("direction", "right")),
        length=sequence_length,
    )
