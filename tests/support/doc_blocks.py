"""The runnable examples of the README and the docs: which fenced blocks are meant to be run, what each is
expected to print, and whether what it printed matches.

A block is run when the line right before its opening fence is `<!-- maas:run -->` (`<!-- maas:run llm -->`:
only where an LLM is published). A block right after `<!-- maas:output -->` is what the last run block
before it prints on stdout. Comparison (docs/development.md says the same):

- an output block fenced as `json` is a sequence of JSON values (one document, or JSON lines): each is parsed
  and compared with what was printed, numbers within a relative 1e-4 (absolute 1e-5 near zero), the string
  `"..."` standing for any value;
- any other output block is compared line by line, trailing spaces ignored: a line that is only `...`
  (indented or not) stands for any number of lines (none included), and `...` inside a line for any text on
  that line.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_MARKER = re.compile(r"^<!--\s*maas:run(?:\s+(?P<tag>[a-z]+))?\s*-->\s*$")
OUTPUT_MARKER = re.compile(r"^<!--\s*maas:output\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<language>[\w+-]*)")
ANY = "..."
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-5
RUNNABLE_LANGUAGES = ("bash", "sh", "shell", "python")


class MarkerError(ValueError):
    """A marker that does not mark what it should (no fenced block after it, an output with no run before)."""


@dataclass(frozen=True, slots=True)
class Expected:
    language: str
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class DocBlock:
    """A fenced block meant to be run: where it is, in which language, its code, and what it must print."""

    path: Path
    line: int
    language: str
    code: str
    tag: str
    expected: Expected | None = None

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def marked_blocks(path: Path) -> list[DocBlock]:
    """Every run block of the Markdown file, in order, each with its expected output if one follows it."""
    lines = path.read_text().splitlines()
    blocks: list[DocBlock] = []
    index = 0
    while index < len(lines):
        fence_line = index + 2  # 1-based: the line after the marker
        run = RUN_MARKER.match(lines[index])
        if run is not None:
            language, code, index = _fenced_after(path, lines, index)
            if language not in RUNNABLE_LANGUAGES:
                languages = "/".join(RUNNABLE_LANGUAGES)
                raise MarkerError(f"{path.name}:{fence_line}: expected a {languages} block, got {language!r}")
            blocks.append(DocBlock(path, fence_line, language, code, run.group("tag") or ""))
        elif OUTPUT_MARKER.match(lines[index]):
            if not blocks or blocks[-1].expected is not None:
                raise MarkerError(f"{path.name}:{index + 1}: an output block needs a run block before it")
            language, text, index = _fenced_after(path, lines, index)
            last = blocks.pop()
            expected = Expected(language, text, fence_line)
            blocks.append(DocBlock(last.path, last.line, last.language, last.code, last.tag, expected))
        index += 1
    return blocks


def _fenced_after(path: Path, lines: list[str], marker: int) -> tuple[str, str, int]:
    """The language and body of the fenced block opening on the line after `marker`, and its closing line."""
    opening = FENCE.match(lines[marker + 1]) if marker + 1 < len(lines) else None
    if opening is None:
        raise MarkerError(f"{path.name}:{marker + 1}: expected a fenced block on the line after the marker")
    fence = opening.group("fence")
    for end in range(marker + 2, len(lines)):
        if lines[end].strip() == fence:
            return opening.group("language"), "\n".join(lines[marker + 2 : end]) + "\n", end
    raise MarkerError(f"{path.name}:{marker + 2}: the fenced block is never closed")


def output_mismatch(expected: Expected, printed: str) -> str | None:
    """Why `printed` is not the expected output, or None when it is."""
    if expected.language == "json":
        return _json_mismatch(expected.text, printed)
    return _text_mismatch(expected.text, printed)


def _json_mismatch(expected_text: str, printed: str) -> str | None:
    wanted = json_values(expected_text)
    try:
        got = json_values(printed)
    except ValueError as error:
        return f"expected JSON, got text that is not ({error}):\n{printed}"
    if len(wanted) != len(got):
        return f"expected {len(wanted)} JSON values, got {len(got)}:\n{printed}"
    for number, (want, have) in enumerate(zip(wanted, got, strict=True)):
        difference = _json_difference(want, have, "$")
        if difference is not None:
            return f"JSON value {number + 1}: {difference}\nprinted:\n{printed}"
    return None


def json_values(text: str) -> list[Any]:
    """The JSON values in `text`, one after the other (one document, or JSON lines)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values
        value, position = decoder.raw_decode(text, position)
        values.append(value)


def _json_difference(want: Any, have: Any, where: str) -> str | None:
    if want == ANY:
        return None
    if isinstance(want, bool) or isinstance(have, bool) or want is None or have is None:
        same = type(want) is type(have) and want == have
        return None if same else f"{where}: expected {want!r}, got {have!r}"
    if isinstance(want, int | float) and isinstance(have, int | float):
        if math.isclose(want, have, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE):
            return None
        return f"{where}: expected {want!r}, got {have!r}"
    if isinstance(want, dict) and isinstance(have, dict):
        if want.keys() != have.keys():
            return f"{where}: expected keys {sorted(want)}, got {sorted(have)}"
        for key, value in want.items():
            difference = _json_difference(value, have[key], f"{where}.{key}")
            if difference is not None:
                return difference
        return None
    if isinstance(want, list) and isinstance(have, list):
        if len(want) != len(have):
            return f"{where}: expected {len(want)} items, got {len(have)}"
        for index, (item, other) in enumerate(zip(want, have, strict=True)):
            difference = _json_difference(item, other, f"{where}[{index}]")
            if difference is not None:
                return difference
        return None
    return None if want == have else f"{where}: expected {want!r}, got {have!r}"


def _text_mismatch(expected_text: str, printed: str) -> str | None:
    wanted = _trimmed_lines(expected_text)
    got = _trimmed_lines(printed)
    patterns = [None if line.strip() == ANY else _line_pattern(line) for line in wanted]
    if _lines_match(patterns, got):
        return None
    expected_listing = "\n".join(wanted)
    return f"expected (`...` elides):\n{expected_listing}\ngot:\n{printed}"


def _trimmed_lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _line_pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.split(ANY)))


def _lines_match(patterns: list[re.Pattern[str] | None], lines: list[str]) -> bool:
    """Whether the lines match the patterns in order, None standing for any number of lines."""
    # reachable[j]: the patterns seen so far can consume exactly the first j lines.
    reachable = [True] + [False] * len(lines)
    for pattern in patterns:
        if pattern is None:
            for j in range(1, len(lines) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and pattern.fullmatch(lines[j]) is not None for j in range(len(lines))
            ]
    return reachable[len(lines)]
