from __future__ import annotations

import pytest

from maas.errors import InvalidInput
from maas.registry import ModelRef, parse_ref, parse_version_selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed-mlp", ModelRef("seed-mlp")),
        ("seed-mlp@production", ModelRef("seed-mlp", alias="production")),
        ("seed-mlp@latest", ModelRef("seed-mlp", alias="latest")),
        ("seed-mlp/versions/3", ModelRef("seed-mlp", version=3)),
        ("seed-mlp/versions/staging", ModelRef("seed-mlp", alias="staging")),
        ("a", ModelRef("a")),
        ("m.v2_x-1", ModelRef("m.v2_x-1")),
    ],
)
def test_every_reference_form_parses(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Seed",
        "-seed",
        "seed mlp",
        "x" * 65,
        "seed@",
        "seed@7",
        "seed/versions/",
        "seed/versions/0",
        "seed/versions/1/2",
        "seed/other/1",
        "../etc",
        "seed@Prod",
    ],
)
def test_malformed_references_are_rejected_before_any_storage_call(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ref(text)
    assert caught.value.status == 400
    assert "expected" in caught.value.message


def test_selector_from_a_v2_path_accepts_numbers_and_aliases() -> None:
    assert parse_version_selector("m", "12") == ModelRef("m", version=12)
    assert parse_version_selector("m", "canary") == ModelRef("m", alias="canary")
    assert parse_version_selector("m", None) == ModelRef("m")


def test_references_print_in_their_canonical_form() -> None:
    assert str(ModelRef("m", version=2)) == "m/versions/2"
    assert str(ModelRef("m", alias="prod")) == "m@prod"
    assert ModelRef("m", version=2).is_pinned and not ModelRef("m", alias="prod").is_pinned


def test_an_overlong_name_is_not_echoed_back() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ref("A" * 500)
    assert "A" * 100 not in caught.value.message
    assert "500 characters" in caught.value.message
