"""Loading text generators from the registry (moto): every artifact verified before use, the session opened
as the decoding loop needs it, and a loaded version kept warm."""

from __future__ import annotations

from typing import Any

import pytest

from maas.config import Settings
from maas.errors import IntegrityError, InvalidInput
from maas.generation import GeneratorLoader, SamplingParams, TextDelta, TextGenerator
from maas.generation.loader import SPINNING_OFF, generator_session_config
from maas.registry import Manifest, ManifestDraft, ModelRegistry
from maas.runtime import usable_cpus
from tests.support.aws import TEST_BUCKET
from tests.support.models import batch_sum_model

NAME = "tiny-llm"


def settings(**overrides: object) -> Settings:
    return Settings(bucket=TEST_BUCKET, provider="cpu", **overrides)  # type: ignore[arg-type]


@pytest.fixture
def published(registry: ModelRegistry, tiny_files: dict[str, bytes], tiny_draft: ManifestDraft) -> Manifest:
    return registry.publish(NAME, tiny_files, tiny_draft)


def greedy_ids(generator: TextGenerator) -> list[int]:
    prompt = generator.encode(generator.render_chat([{"role": "user", "content": "hi"}]))
    events = generator.generate(prompt, SamplingParams(max_tokens=12, temperature=0))
    return [token for event in events if isinstance(event, TextDelta) for token in event.token_ids]


def test_a_published_version_loads_and_generates_as_the_same_files_on_disk(
    registry: ModelRegistry, published: Manifest, tiny_generator: TextGenerator
) -> None:
    loaded = GeneratorLoader(registry, settings()).get(NAME, published.version)

    assert loaded.manifest == published
    assert loaded.context_length == published.generation.context_length  # type: ignore[union-attr]
    assert greedy_ids(loaded) == greedy_ids(tiny_generator)


def test_a_loaded_version_is_served_from_memory_until_evicted(
    registry: ModelRegistry, published: Manifest
) -> None:
    loader = GeneratorLoader(registry, settings())

    first = loader.get(NAME, published.version)

    assert loader.get(NAME, published.version) is first
    assert loader.cache.loads == 1
    # At least the files; a load also holds what its session measurably added.
    assert first.size_bytes >= published.total_bytes


def test_a_second_version_over_the_byte_budget_evicts_the_first(
    registry: ModelRegistry, published: Manifest, tiny_files: dict[str, bytes], tiny_draft: ManifestDraft
) -> None:
    second = registry.publish(NAME, tiny_files, tiny_draft)
    loader = GeneratorLoader(registry, settings(cache_bytes=published.total_bytes + 1))

    loader.get(NAME, published.version)
    loader.get(NAME, second.version)

    assert loader.cache.loaded_keys() == [(NAME, second.version)]


@pytest.mark.parametrize(
    "artifact", ["model.onnx.data", "tokenizer.json", "chat_template.jinja", "model.onnx"]
)
def test_an_artifact_changed_in_storage_fails_the_load_as_an_integrity_error(
    registry: ModelRegistry, published: Manifest, s3: Any, artifact: str
) -> None:
    key = registry.version_prefix(NAME, published.version) + artifact
    body = s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()
    # One bit of the last byte flipped: the same size, another sha256.
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))
    loader = GeneratorLoader(registry, settings())

    with pytest.raises(
        IntegrityError, match=f"artifact '{artifact}' of model '{NAME}' v1: expected the sha256"
    ):
        loader.get(NAME, published.version)
    assert loader.cache.loaded_keys() == []


def test_a_model_that_generates_no_text_is_refused_naming_model(registry: ModelRegistry) -> None:
    files, draft = batch_sum_model()
    version = registry.publish("summer", files, draft).version

    with pytest.raises(InvalidInput, match=r"^model: expected a text generator, got 'summer' v1"):
        GeneratorLoader(registry, settings()).get("summer", version)


def test_a_tokenizer_that_does_not_parse_is_an_integrity_error(
    registry: ModelRegistry, tiny_files: dict[str, bytes], tiny_draft: ManifestDraft
) -> None:
    version = registry.publish(NAME, {**tiny_files, "tokenizer.json": b"not json"}, tiny_draft).version

    with pytest.raises(
        IntegrityError, match=r"tokenizer\.json of model 'tiny-llm' v1: expected a tokenizers JSON"
    ):
        GeneratorLoader(registry, settings()).get(NAME, version)


def test_the_session_has_spinning_off_and_a_thread_per_usable_cpu() -> None:
    options = generator_session_config(settings()).session_options()

    assert options.intra_op_num_threads == usable_cpus()
    assert options.get_session_config_entry(SPINNING_OFF[0]) == SPINNING_OFF[1] == "0"
    assert generator_session_config(settings(intra_op_threads=1)).session_options().intra_op_num_threads == 1
