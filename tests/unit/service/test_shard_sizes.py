"""Which shard size a job gets: a byte of numbers, of texts and of prompts take very different times to
answer, and every shard must end well inside the batch function's timeout."""

from __future__ import annotations

from maas.config import (
    DEFAULT_JOB_SHARD_BYTES,
    DEFAULT_PROMPT_JOB_SHARD_BYTES,
    DEFAULT_TEXT_JOB_SHARD_BYTES,
    Settings,
)
from maas.registry.manifest import Artifact, Manifest, Preprocessing, TokenizerPreprocessing
from maas.service.sharded_jobs import shard_bytes_for, shard_bytes_setting
from maas.signature import Signature, TensorSpec


def manifest(*, tokenizer: bool) -> Manifest:
    """A model 'm' v1: rows of floats, or (with a tokenizer) texts tokenized before its graph."""
    inputs = (
        [
            TensorSpec(name="input_ids", datatype="INT64", shape=[-1, -1]),
            TensorSpec(name="attention_mask", datatype="INT64", shape=[-1, -1]),
        ]
        if tokenizer
        else [TensorSpec(name="x", datatype="FP32", shape=[-1, 4])]
    )
    artifacts = [Artifact(path="model.onnx", sha256="0" * 64, bytes=1)]
    if tokenizer:
        artifacts.append(Artifact(path="tokenizer.json", sha256="1" * 64, bytes=1))
    return Manifest(
        name="m",
        version=1,
        created_at="2026-12-06T00:00:00Z",
        signature=Signature(inputs=inputs, outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, 2])]),
        artifacts=artifacts,
        preprocessing=Preprocessing(
            tokenizer=TokenizerPreprocessing(tokenizer_file="tokenizer.json", max_length=128)
        )
        if tokenizer
        else None,
    )


def test_a_text_model_gets_the_text_shard_size_and_a_model_of_numbers_the_plain_one() -> None:
    defaults = Settings.from_env({})
    assert shard_bytes_for(defaults, manifest(tokenizer=False)) == DEFAULT_JOB_SHARD_BYTES == 64 * 2**20
    assert shard_bytes_for(defaults, manifest(tokenizer=True)) == DEFAULT_TEXT_JOB_SHARD_BYTES == 2 * 2**20
    assert DEFAULT_PROMPT_JOB_SHARD_BYTES == 64 * 2**10


def test_each_shard_size_is_its_own_setting() -> None:
    settings = Settings.from_env({"MAAS_JOB_SHARD_BYTES": "1000000", "MAAS_TEXT_JOB_SHARD_BYTES": "30000"})

    assert shard_bytes_for(settings, manifest(tokenizer=False)) == 1_000_000
    assert shard_bytes_for(settings, manifest(tokenizer=True)) == 30_000


def test_a_shard_out_of_time_is_told_which_setting_sizes_its_shards() -> None:
    assert shard_bytes_setting(manifest(tokenizer=False)) == (
        "MAAS_JOB_SHARD_BYTES (template parameter JobShardBytes)"
    )
    assert shard_bytes_setting(manifest(tokenizer=True)) == (
        "MAAS_TEXT_JOB_SHARD_BYTES (template parameter TextJobShardBytes)"
    )
