"""`maas train smollm2-135m`: flags that only mean something to a training recipe are refused up front,
before any weights are imported."""

from __future__ import annotations

import pytest

from tests.support.cli import fail


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--epochs", "3"], "--epochs"),
        (["--seed", "1"], "--seed"),
        (["--search", "tpe"], "--search"),
        (["--external-data"], "--external-data"),
    ],
)
def test_training_flags_are_refused_for_an_llm_recipe(
    capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    message = fail(capsys, "train", "smollm2-135m", *flags, "--no-publish")

    assert named in message
    assert "trains nothing" in message


def test_an_invalid_publish_name_is_refused_before_anything_is_built(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A storage target, as a user's would be: without one, a publishing command stops at that first.
    monkeypatch.setenv("MAAS_BUCKET", "llm-cli-tests")
    message = fail(capsys, "train", "smollm2-135m", "--publish", "Not A Name")

    assert "Not A Name" in message


def test_int4_is_refused_for_a_recipe_that_is_not_an_llm(capsys: pytest.CaptureFixture[str]) -> None:
    message = fail(capsys, "train", "seed-mlp", "--quantize", "int4", "--no-publish")

    assert "--quantize int4" in message
    assert "int8" in message
