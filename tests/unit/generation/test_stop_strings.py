"""Stop strings over text arriving in pieces: the first occurrence ends it, and no part of a stop string is
ever released, however the pieces split it."""

from __future__ import annotations

import pytest

from maas.generation.stop_strings import Released, StopStringMatcher


def pushed(stops: tuple[str, ...], pieces: list[str]) -> tuple[list[Released], str]:
    matcher = StopStringMatcher(stops)
    released = []
    for piece in pieces:
        released.append(matcher.push(piece))
        if released[-1].stopped:
            break
    return released, matcher.flush()


def test_without_stop_strings_text_passes_straight_through() -> None:
    assert pushed((), ["a", "bc"]) == ([Released("a"), Released("bc")], "")


def test_a_stop_string_split_across_pieces_ends_before_it() -> None:
    released, rest = pushed(("END",), ["the E", "N", "D of it"])

    assert released == [Released("the "), Released(""), Released("", stopped=True)]
    assert rest == ""


def test_text_that_only_began_like_a_stop_string_is_released_once_it_diverges() -> None:
    released, rest = pushed(("END",), ["an E", "NV", "ELOPE"])

    # "E" is held each time it ends a piece, and released as soon as the next piece shows it is no "END".
    assert [piece.text for piece in released] == ["an ", "ENV", "ELOP"]
    assert not any(piece.stopped for piece in released)
    assert rest == "E"


def test_text_held_at_the_end_is_flushed_when_no_stop_string_came() -> None:
    released, rest = pushed(("END",), ["fin", "E"])

    assert "".join(piece.text for piece in released) + rest == "finE"
    assert rest == "E"


def test_the_earliest_stop_string_wins_whichever_is_listed_first() -> None:
    released, _ = pushed(("world", "lo"), ["hello world"])

    assert released == [Released("hel", stopped=True)]


def test_a_stop_string_at_the_very_start_releases_nothing() -> None:
    assert pushed(("<",), ["<tag>"])[0] == [Released("", stopped=True)]


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_any_split_releases_the_same_text(size: int) -> None:
    text = "one ## two ### three #### four"
    pieces = [text[start : start + size] for start in range(0, len(text), size)]

    released, rest = pushed(("###", "# f"), pieces)

    assert "".join(piece.text for piece in released) == "one ## two "
    assert released[-1].stopped
    assert rest == ""


def test_the_longest_possible_beginning_is_held() -> None:
    matcher = StopStringMatcher(("abcab", "x"))

    assert matcher.push("zzabca") == Released("zz")
    assert matcher.push("b") == Released("", stopped=True)
