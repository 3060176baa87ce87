"""Token ids to text as they are generated, never emitting half a character.

A byte-level BPE (GPT-2's, SmolLM2's) can split one multi-byte UTF-8 character across tokens, so decoding
the tokens so far can end in U+FFFD until the character's last byte arrives. Text is emitted only when the
decoded tail is whole. Each step decodes a short window, not everything generated: the text of the tokens
already emitted (the prefix) and of those plus the new ones; the difference is the new text. Decoding in
context, rather than token by token, keeps a SentencePiece tokenizer's leading spaces, which it strips from
the first token of any decode (the approach of vLLM's and TGI's detokenizers). The window starts in the
prompt for the same reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

REPLACEMENT_CHARACTER = "\ufffd"
# Prompt tokens the first window starts with: enough for any leading-space or merge context.
PROMPT_CONTEXT_TOKENS = 5
# SentencePiece's byte fallback writes a raw byte as a token like <0xE3>.
BYTE_FALLBACK_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


class IncrementalDetokenizer:
    """The text of one generation's tokens, handed out piece by piece as it becomes final."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._ids = list(prompt_ids[-PROMPT_CONTEXT_TOKENS:])
        # ids[prefix:read] decode to text already handed out (or the prompt's); ids[read:] to text held back.
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, token_id: int) -> str:
        """The text that `token_id` completes: "" while it ends inside a character (or is a special token)."""
        self._ids.append(token_id)
        prefix, text = self._decoded()
        if len(text) <= len(prefix) or text.endswith(REPLACEMENT_CHARACTER):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return text[len(prefix) :]

    def flush(self) -> str:
        """At the end of generation, whatever is held back: bytes that never became a character show as
        U+FFFD, as decoding all the tokens at once would show them."""
        prefix, text = self._decoded()
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(prefix) :] if len(text) > len(prefix) else ""

    def _decoded(self) -> tuple[str, str]:
        window = self._ids[self._prefix_offset :]
        prefix = self._tokenizer.decode(window[: self._read_offset - self._prefix_offset])
        return prefix, self._tokenizer.decode(window)


class TokenTexts:
    """Each token's own bytes and text, as logprobs report them: the bytes of " Paris" for the byte-level
    token "ĠParis", the one raw byte of a token holding part of a character."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        described = json.loads(tokenizer.to_str())
        self._byte_level = _uses_byte_level(described.get("decoder"))
        self._added = {token["id"] for token in described.get("added_tokens", [])}
        self._cache: dict[int, bytes] = {}

    def bytes_of(self, token_id: int) -> bytes:
        found = self._cache.get(token_id)
        if found is None:
            found = self._cache[token_id] = self._bytes_of(token_id)
        return found

    def text_of(self, token_id: int) -> str:
        return self.bytes_of(token_id).decode("utf-8", errors="replace")

    def _bytes_of(self, token_id: int) -> bytes:
        token = self._tokenizer.id_to_token(token_id)
        if token is None:  # an id the graph's vocabulary has beyond the tokenizer's
            return b""
        if token_id not in self._added:
            if self._byte_level:
                byte_values = _byte_level_decoder()
                if all(char in byte_values for char in token):
                    return bytes(byte_values[char] for char in token)
            fallback = BYTE_FALLBACK_TOKEN.match(token)
            if fallback:
                return bytes([int(fallback.group(1), 16)])
        return self._tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")


def _uses_byte_level(decoder: Any) -> bool:
    if not isinstance(decoder, dict):
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    return decoder.get("type") == "Sequence" and any(_uses_byte_level(d) for d in decoder.get("decoders", []))


@cache
def _byte_level_decoder() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's): each byte's printable stand-in character, mapped back to it.
    Printable bytes stand for themselves; the others take the characters from U+0100 on, in byte order."""
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    stand_ins: dict[str, int] = {}
    next_free = 256
    for byte in range(256):
        if byte in printable:
            stand_ins[chr(byte)] = byte
        else:
            stand_ins[chr(next_free)] = byte
            next_free += 1
    return stand_ins
