"""Text in, token ids out: a published `tokenizer.json` applied with Hugging Face `tokenizers` alone.

`tokenizers` is imported when a text model loads, never at import time, so functions and models that
take no text don't pay for it at cold start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from maas.errors import IntegrityError, InvalidInput
from maas.registry.manifest import TokenizerPreprocessing

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

# BERT's convention, for a tokenizer.json that carries no padding settings of its own.
DEFAULT_PAD_TOKEN = "[PAD]"
DEFAULT_PAD_ID = 0
MASK_TOKEN = "[MASK]"


@dataclass(frozen=True, eq=False)
class TokenizedTexts:
    feeds: dict[str, npt.NDArray[Any]]
    # Per text: every token string (padding included) and the positions of the text's own tokens.
    tokens: list[list[str]]
    content: list[list[int]]


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
        self._tokenizer = _configured(tokenizer_json, preprocessing, sequence_length)

    @property
    def input_name(self) -> str:
        return self.preprocessing.text_input

    def encode(self, texts: npt.NDArray[Any]) -> dict[str, npt.NDArray[np.int64]]:
        """`texts` is a [N] array of str or UTF-8 bytes; returns each graph input as an int64 [N, L] array."""
        return self._feeds(self._encode_batch(self._strings(texts)))

    def encode_tokens(self, texts: npt.NDArray[Any]) -> TokenizedTexts:
        """The graph's id tensors, with each text's tokens and which of them are the text's own."""
        encodings = self._encode_batch(self._strings(texts))
        return TokenizedTexts(
            feeds=self._feeds(encodings),
            tokens=[list(e.tokens) for e in encodings],
            # Not a special token ([CLS], [SEP]) and not padding: what an explanation attributes to.
            content=[
                [
                    position
                    for position, (special, attended) in enumerate(
                        zip(e.special_tokens_mask, e.attention_mask, strict=True)
                    )
                    if not special and attended
                ]
                for e in encodings
            ],
        )

    @property
    def pad_id(self) -> int:
        padding = self._tokenizer.padding or {}
        return int(padding.get("pad_id", DEFAULT_PAD_ID))

    @property
    def mask_id(self) -> int | None:
        """The id of the tokenizer's mask token ([MASK] in BERT's vocabulary), if it has one."""
        found = self._tokenizer.token_to_id(MASK_TOKEN)
        return None if found is None else int(found)

    def _feeds(self, encodings: list[Encoding]) -> dict[str, npt.NDArray[np.int64]]:
        width = len(encodings[0].ids) if encodings else 0
        pre = self.preprocessing
        feeds = {
            pre.input_ids: _matrix([e.ids for e in encodings], width),
            pre.attention_mask: _matrix([e.attention_mask for e in encodings], width),
        }
        if pre.token_type_ids is not None:
            # The tokenizer's own type ids: zeros for one sequence under BERT's template, and whatever a
            # different template assigns otherwise, exactly as at training time.
            feeds[pre.token_type_ids] = _matrix([e.type_ids for e in encodings], width)
        return feeds

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

    def _encode_batch(self, strings: list[str]) -> list[Encoding]:
        try:
            return self._tokenizer.encode_batch(strings)
        except TypeError:
            # Checked only on failure, so valid batches are not encoded twice: a str holding a lone
            # surrogate (JSON allows "\ud800") is the one thing that gets this far and is not UTF-8.
            for index, text in enumerate(strings):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidInput(
                        f"input '{self.input_name}': element {index}: expected UTF-8 text, "
                        "got a string with a lone surrogate"
                    ) from None
            raise


def _configured(
    tokenizer_json: bytes, preprocessing: TokenizerPreprocessing, sequence_length: int | None
) -> Tokenizer:
    # tokenizers' thread pool costs more than it saves on Lambda's one or two vCPUs: a batch of 32 texts
    # tokenized in 2.4 ms without it and 4.3 ms with it (make bench). A deployment may still turn it on.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    where = f"tokenizer file '{preprocessing.tokenizer_file}'"
    try:
        tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
        raise IntegrityError(
            f"{where}: expected a Hugging Face tokenizer.json, got one it cannot read: {exc}"
        ) from None
    max_length = preprocessing.max_length
    if sequence_length is not None:
        max_length = min(max_length, sequence_length)
    tokenizer.enable_truncation(max_length=max_length)
    # Keep the tokenizer's own pad token and type id, but not its length: a fixed length saved for
    # training would make every short request pay for the longest one.
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token", DEFAULT_PAD_TOKEN)
    pad_id = padding.get("pad_id")
    if pad_id is None:
        found = tokenizer.token_to_id(pad_token)
        pad_id = DEFAULT_PAD_ID if found is None else found
    tokenizer.enable_padding(
        pad_id=pad_id,
        pad_token=pad_token,
        pad_type_id=padding.get("pad_type_id", 0),
        direction=padding.get("direction", "right"),
        length=sequence_length,
    )
    return tokenizer


def _matrix(rows: list[list[int]], width: int) -> npt.NDArray[np.int64]:
    return np.array(rows, dtype=np.int64).reshape(len(rows), width)
