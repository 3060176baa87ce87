"""The markers that put the docs' examples under test (`<!-- maas:run -->`, `<!-- maas:output -->`) mark what
they should, and an example's output is compared as docs/development.md says: JSON within a tolerance, text
line by line with `...` for what is elided."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.doc_blocks import Expected, MarkerError, marked_blocks, output_mismatch
from tests.support.paths import ROOT

MARKDOWN_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_marker_in_the_docs_marks_a_fenced_block(path: Path) -> None:
    marked_blocks(path)  # raises MarkerError naming the line


def test_a_run_block_takes_the_output_block_after_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- maas:run -->\n```bash\necho hi\n```\n\nprose\n\n"
        "<!-- maas:output -->\n```text\nhi\n```\n"
        "\n<!-- maas:run llm -->\n```python\nprint(1)\n```\n"
    )

    first, second = marked_blocks(page)

    assert (first.line, first.language, first.code, first.tag) == (4, "bash", "echo hi\n", "")
    assert first.expected == Expected("text", "hi\n", 11)
    assert (second.language, second.tag, second.expected) == ("python", "llm", None)


@pytest.mark.parametrize(
    ("page", "complaint"),
    [
        ("<!-- maas:run -->\n\n```bash\necho\n```\n", "page.md:1: expected a fenced block on the line after"),
        ("<!-- maas:output -->\n```text\nhi\n```\n", "page.md:1: an output block needs a run block"),
        ("<!-- maas:run -->\n```bash\necho\n", "page.md:2: the fenced block is never closed"),
        ("<!-- maas:run -->\n```json\n{}\n```\n", "expected a bash/sh/shell/python block"),
    ],
)
def test_a_marker_that_marks_nothing_runnable_is_refused(tmp_path: Path, page: str, complaint: str) -> None:
    (tmp_path / "page.md").write_text(page)

    with pytest.raises(MarkerError, match=complaint):
        marked_blocks(tmp_path / "page.md")


@pytest.mark.parametrize(
    ("language", "expected", "printed"),
    [
        ("json", '{"a": 0.4650706, "b": [1, "x"]}', '{"a":0.46507058,"b":[1,"x"]}'),
        ("json", '{"a": 1.0}', '{"a": 1.00009}'),
        ("json", '{"id": "...", "n": 2}', '{"id": "7f3a", "n": 2}'),
        ("json", '{"id": "..."}', '{"id": {"nested": [1, 2]}}'),
        ("json", '{"a": 1}\n{"a": 2}\n', '{"a":1}\n{"a":2}\n'),
        ("text", "seed-mlp v1\n...\nend", "seed-mlp v1\nx\ny\nend\n"),
        ("text", "seed-mlp v1\n...\nend", "seed-mlp v1\nend"),
        ("text", "row 0\n  input[1]\n  ...", "row 0\n  input[1]\n  input[4]\n  input[6]"),
        ("text", "took ... s", "took 1.5 s   \n"),
        ("", "\nhello\n", "hello\n\n"),
    ],
)
def test_output_that_matches_passes(language: str, expected: str, printed: str) -> None:
    assert output_mismatch(Expected(language, expected, 1), printed) is None


@pytest.mark.parametrize(
    ("language", "expected", "printed", "complaint"),
    [
        ("json", '{"a": 1.0}', '{"a": 1.001}', r"\$\.a: expected 1.0, got 1.001"),
        ("json", '{"a": 1}', '{"a": 1, "b": 2}', r"\$: expected keys \['a'\], got \['a', 'b'\]"),
        ("json", '{"a": [1, 2]}', '{"a": [1]}', r"\$\.a: expected 2 items, got 1"),
        ("json", '{"a": true}', '{"a": 1}', r"\$\.a: expected True, got 1"),
        ("json", '{"a": "x"}', '{"a": null}', r"\$\.a: expected 'x', got None"),
        ("json", '{"a": 1}', '{"a": 1}\n{"a": 1}', "expected 1 JSON values, got 2"),
        ("json", '{"a": 1}', "error: no stack", "expected JSON, got text"),
        ("text", "a\nb", "a\nc", "expected"),
        ("text", "a\n...\nb", "a\nc", "expected"),
        ("text", "a ... b", "a b", "expected"),
        ("text", "a", "a\nb", "expected"),
    ],
)
def test_output_that_differs_fails_saying_where(
    language: str, expected: str, printed: str, complaint: str
) -> None:
    mismatch = output_mismatch(Expected(language, expected, 1), printed)

    assert mismatch is not None
    assert re.search(complaint, mismatch), mismatch
