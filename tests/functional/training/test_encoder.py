"""The BERT encoder: same math as the reference implementations, and exportable with dynamic shapes."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer

from maas.training import ModelCheckFailed
from maas.training.encoder import (
    BertEncoder,
    EncoderConfig,
    SentenceEmbedder,
    TextClassifier,
    load_bert_state_dict,
    load_minilm,
    mean_pool,
    minilm_max_length,
    minilm_path,
)
from maas.training.text_data import encode_texts

TINY = EncoderConfig(
    vocab_size=50, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=40
)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "hi",
    "Serverless inference trades cold starts for zero idle cost.",
    "I did not like this movie at all; it was never boring, though!",
    "Der Zug nach München hat wieder Verspätung.",
    "emoji 🚀 and accents: café, naïve, résumé",
    "   leading and trailing whitespace   ",
    # Longer than the 256-token limit, so truncation is part of what must agree.
    "a very " + "very " * 300 + "long sentence",
]


@pytest.fixture(scope="module")
def minilm() -> tuple[SentenceEmbedder, Path]:
    return load_minilm()


def test_minilm_matches_sentence_transformers(minilm: tuple[SentenceEmbedder, Path]) -> None:
    from sentence_transformers import SentenceTransformer

    embedder, tokenizer_path = minilm
    # encode_texts truncates at 256 and pads to the longest, exactly as the serving runtime will.
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    input_ids, attention_mask = encode_texts(tokenizer, SENTENCES, max_length=minilm_max_length())
    reference = SentenceTransformer(str(minilm_path()), device="cpu")

    with torch.inference_mode():
        ours = embedder(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).numpy()
    theirs = reference.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=True)

    assert minilm_max_length() == reference.max_seq_length == 256
    assert input_ids.shape == (len(SENTENCES), 256)
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert np.all(cosine >= 0.9999), cosine


def test_minilm_loads_in_eval_mode(minilm: tuple[SentenceEmbedder, Path]) -> None:
    embedder, tokenizer_path = minilm

    assert not embedder.training
    assert tokenizer_path.name == "tokenizer.json" and tokenizer_path.is_file()
    assert embedder.encoder.config.num_layers == 6


def test_state_dict_keys_are_bert_models() -> None:
    from transformers import BertConfig, BertModel

    reference = BertModel(
        BertConfig(
            vocab_size=TINY.vocab_size,
            hidden_size=TINY.hidden_size,
            num_hidden_layers=TINY.num_layers,
            num_attention_heads=TINY.num_heads,
            intermediate_size=TINY.intermediate_size,
            max_position_embeddings=TINY.max_position,
        ),
        add_pooling_layer=False,
    )
    # transformers leaves `eval` untyped; `train(False)` is the same switch.
    reference.train(False)
    encoder = BertEncoder(TINY).eval()
    input_ids, attention_mask = _random_inputs(batch=3, length=9, seed=0)

    load_bert_state_dict(encoder, reference.state_dict())
    with torch.inference_mode():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        got = encoder(input_ids, attention_mask)

    assert set(encoder.state_dict()) <= set(reference.state_dict())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_loading_reports_missing_and_unexpected_keys() -> None:
    weights = BertEncoder(TINY).state_dict()
    weights["encoder.layer.9.output.dense.weight"] = weights.pop("encoder.layer.1.output.dense.weight")

    with pytest.raises(
        ModelCheckFailed, match=r"missing \['encoder\.layer\.1\.output\.dense\.weight'\]"
    ) as exc:
        load_bert_state_dict(BertEncoder(TINY), weights)
    assert "unexpected ['encoder.layer.9.output.dense.weight']" in str(exc.value)


def test_loading_tolerates_the_known_extras_of_a_bert_checkpoint() -> None:
    source = BertEncoder(TINY)
    weights = {f"bert.{key}": tensor for key, tensor in source.state_dict().items()}
    weights["bert.embeddings.position_ids"] = torch.arange(TINY.max_position)[None]
    weights["bert.pooler.dense.weight"] = torch.zeros(TINY.hidden_size, TINY.hidden_size)
    target = BertEncoder(TINY)

    load_bert_state_dict(target, weights)

    for key, tensor in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], tensor)


def test_classifier_exports_with_dynamic_batch_and_sequence() -> None:
    torch.manual_seed(0)
    classifier = TextClassifier(BertEncoder(TINY), num_classes=3).eval()
    example = _random_inputs(batch=2, length=7, seed=1)

    with _exported(classifier, example) as session:
        input_shapes = [graph_input.shape for graph_input in session.get_inputs()]
        for batch, length in [(5, 13), (1, 3), (3, TINY.max_position)]:
            input_ids, attention_mask = _random_inputs(batch, length, seed=batch)
            with torch.inference_mode():
                expected = classifier(input_ids, attention_mask).numpy()
            got = session.run(
                None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
            )

            assert got[0].shape == (batch, 3)
            np.testing.assert_allclose(got[0], expected, atol=1e-4, rtol=0)

    assert all(isinstance(dim, str) for shape in input_shapes for dim in shape), input_shapes


def test_padding_does_not_change_the_sentence_embedding() -> None:
    torch.manual_seed(0)
    embedder = SentenceEmbedder(BertEncoder(TINY)).eval()
    input_ids, attention_mask = _random_inputs(batch=3, length=8, seed=2)
    padded_ids = torch.cat([input_ids, torch.zeros(3, 5, dtype=torch.int64)], dim=1)
    padded_mask = torch.cat([attention_mask, torch.zeros(3, 5, dtype=torch.int64)], dim=1)

    with torch.inference_mode():
        unpadded = embedder(input_ids, attention_mask)
        padded = embedder(padded_ids, padded_mask)

    torch.testing.assert_close(padded, unpadded, atol=1e-5, rtol=0)


def test_mean_pool_ignores_masked_tokens() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])

    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def _random_inputs(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with a mask whose first row is padded past its middle, so padding is always exercised."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, TINY.vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.int64)
    attention_mask[0, max(1, length // 2) :] = 0
    input_ids[attention_mask == 0] = TINY.pad_token_id
    return input_ids, attention_mask


@contextmanager
def _exported(
    module: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]
) -> Iterator[ort.InferenceSession]:
    """Export with dynamic batch and sequence axes to a model.onnx and open it on the CPU, as serving does."""
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=TINY.max_position)
    dims = {0: batch, 1: sequence}
    exporter_logger = logging.getLogger("torch.onnx")
    level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                dynamic_shapes=(dims, dims),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                verbose=False,
            )
    finally:
        exporter_logger.setLevel(level)
    assert program is not None
    with tempfile.TemporaryDirectory(prefix="maas-encoder-") as tmp:
        path = Path(tmp) / "model.onnx"
        program.save(str(path))
        yield ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
