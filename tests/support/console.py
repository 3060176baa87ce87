"""What the console's browser tests stand on: the models published into their stack, and where screenshots go.

One model of each kind the console's playground knows, each tiny and real (trained by our recipes or built
with onnx.helper), so every page and playground has something true to show:
- `seed-mlp` v1 (the recipe at TINY_SEED_OVERRIDES, `production`), and v2 trained for one epoch, whose worse
  mse the promotion gate refuses to move `production` to without force;
- `digits`: the digits-resnet recipe at TINY_DIGITS_OVERRIDES (a card with its confusion matrix, per-class
  results);
- `sentiment`: a bag-of-words text classifier (negative/positive) behind the WordPiece tokenizer;
- `embedder`: text in, a summed bag-of-words vector of EMBEDDING_DIM out (task "embedding");
- `tiny-llm`: the tiny random-weight decoder (task "text-generation"), which streams gibberish token by token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from maas.registry import Manifest, ManifestDraft, ModelRegistry
from maas.registry.manifest import MODEL_FILE, Preprocessing, TokenizerPreprocessing
from maas.runtime import signature_of
from tests.support.llm import TINY_LLM_NAME, publish_tiny_llm
from tests.support.models import (
    BATCH,
    IR_VERSION,
    OPSET,
    TOKENIZER_FILE,
    WORDPIECE_VOCAB,
    bag_of_words_model,
    wordpiece_tokenizer_json,
)
from tests.support.paths import ROOT

if TYPE_CHECKING:
    from maas.training import TrainedModel

SEED = "seed-mlp"
DIGITS = "digits"
SENTIMENT = "sentiment"
EMBEDDER = "embedder"
LLM = TINY_LLM_NAME
EMBEDDING_DIM = 8
# Screenshots of every page a browser test visits: CI keeps this folder as the run's artifacts.
ARTIFACTS = Path(os.environ.get("MAAS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"


@dataclass(frozen=True)
class TrainedConsoleModels:
    """The models that take torch to make, trained once per test session."""

    seed: TrainedModel
    worse_seed: TrainedModel
    digits: TrainedModel


def train_console_models(seed: TrainedModel, digits: TrainedModel) -> TrainedConsoleModels:
    """`seed` and `digits` as the root conftest trains them (seed-mlp and digits-resnet, tiny), and the worse
    seed-mlp trained here."""
    from maas.training import train_recipe

    worse = train_recipe("seed-mlp", {"epochs": 1})
    if not worse.draft.metrics["mse"] > seed.draft.metrics["mse"]:
        raise AssertionError("the one-epoch seed-mlp should have a worse mse than the trained one")
    return TrainedConsoleModels(seed, worse, digits)


def publish_console_models(registry: ModelRegistry, trained: TrainedConsoleModels) -> dict[str, Manifest]:
    """Every model of the module docstring, published with `production` set on each; their manifests by name
    (seed-mlp's is v1's)."""
    from maas.registry.admin import RegistryAdmin
    from maas.training import publish_trained

    published = {
        SEED: publish_trained(trained.seed, registry, SEED),
        DIGITS: publish_trained(trained.digits, registry, DIGITS),
        SENTIMENT: registry.publish(SENTIMENT, *bag_of_words_model(_sentiment_weights())),
        EMBEDDER: registry.publish(EMBEDDER, *embedding_model()),
        LLM: publish_tiny_llm(registry),
    }
    admin = RegistryAdmin(registry)
    for name, manifest in published.items():
        admin.set_alias(name, "production", manifest.version, reason="console tests", by="tests")
    publish_trained(trained.worse_seed, registry, SEED)
    return published


def _sentiment_weights() -> np.ndarray:
    """Per token: [negative, positive] logits; "cat", "hello" and "world" lean positive, "dog" negative."""
    weights = np.zeros((len(WORDPIECE_VOCAB), 2), dtype=np.float32)
    leaning = {
        "cat": (0.0, 2.0),
        "hello": (0.0, 1.0),
        "world": (0.0, 0.5),
        "dog": (2.0, 0.0),
        "mat": (1.0, 0.0),
    }
    for token, row in leaning.items():
        weights[WORDPIECE_VOCAB.index(token)] = row
    return weights


def embedding_model(dim: int = EMBEDDING_DIM) -> tuple[dict[str, bytes], ManifestDraft]:
    """Text in through the WordPiece tokenizer; out, the sum of each attended token's random vector."""
    vectors = np.random.default_rng(7).normal(size=(len(WORDPIECE_VOCAB), dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["vectors", "input_ids"], ["per_token"], name="lookup", axis=0),
            helper.make_node("Cast", ["attention_mask"], ["mask"], name="mask", to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"], name="expand"),
            helper.make_node("Mul", ["per_token", "mask3"], ["attended"], name="attend"),
            helper.make_node(
                "ReduceSum", ["attended", "tokens_axis"], ["embedding"], name="pool", keepdims=0
            ),
        ],
        "bag_of_words_embedder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [BATCH, "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [BATCH, "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [BATCH, dim])],
        initializer=[
            numpy_helper.from_array(vectors, "vectors"),
            helper.make_tensor("last_axis", TensorProto.INT64, [1], [2]),
            helper.make_tensor("tokens_axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    content = model.SerializeToString()
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    draft = ManifestDraft(
        task="embedding",
        description="Summed token vectors: a bag-of-words text embedding.",
        signature=signature_of(session),
        preprocessing=Preprocessing(
            tokenizer=TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=32)
        ),
    )
    return {MODEL_FILE: content, TOKENIZER_FILE: wordpiece_tokenizer_json()}, draft
