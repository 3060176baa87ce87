"""Tiny real models: the recipes' overrides that train in seconds, and ONNX graphs built with `onnx.helper`,
ready for `ModelRegistry.publish(name, files, draft)`.

The graphs exercise the wire protocol rather than any learning: every V2 datatype echoed back unchanged,
strings through onnxruntime's StringNormalizer, and token ids from a published tokenizer.json. Each
builder reads the manifest's signature from the graph itself through onnxruntime, exactly as the runtime
will check it on load.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from maas.datatypes import DATATYPES, Datatype
from maas.registry import ManifestDraft
from maas.registry.manifest import MODEL_FILE, Preprocessing, TokenizerPreprocessing
from maas.runtime import signature_of

# Small enough to train in about a second, big enough to be a real, non-trivial model.
TINY_SEED_OVERRIDES = {"epochs": 3}
# Trains in about 2 s on one core and reaches about 0.9 test accuracy: accurate enough that its
# attributions mean something, and non-linear (convolutions, BatchNorm, ReLU), unlike the seed MLP.
TINY_DIGITS_OVERRIDES = {"epochs": 6, "width": 12, "depth": 1, "progress": False}

# Opset 17 pairs with IR version 8, which every onnxruntime since 1.13 loads.
OPSET = 17
IR_VERSION = 8
BATCH = "batch"
ECHO_WIDTH = 3
TEXT_LOCALE = "C.UTF-8"

TOKENIZER_FILE = "tokenizer.json"
# Short enough that an ordinary sentence gets truncated.
TOKEN_STATS_MAX_LENGTH = 8
# A BERT-style WordPiece vocabulary: specials first, [PAD] = 0, then words and ## continuation pieces.
WORDPIECE_VOCAB = (
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "a", "cat", "dog", "sat", "on", "mat", "hello", "world", "model", "serve",
    "straße", "##s", "##ing", "##ed", ".", ",", "!", "?",
)  # fmt: skip

ModelFiles = dict[str, bytes]


# The time budget tests' model: a run takes a few hundred milliseconds on one core.
SLOW_MODEL = "slow-chain"
SLOW_WIDTH = 1024
SLOW_LAYERS = 10


def echo_input_name(datatype: str) -> str:
    return f"x_{datatype.lower()}"


def echo_output_name(datatype: str) -> str:
    return f"y_{datatype.lower()}"


def dtype_echo_model() -> tuple[ModelFiles, ManifestDraft]:
    """For every V2 datatype, `x_<type>` [-1, 3] -> Identity -> `y_<type>` [-1, 3].

    onnxruntime's CPU Identity kernel covers all thirteen V2 datatypes (checked with ORT 1.32), so none
    is left out.
    """
    nodes, inputs, outputs = [], [], []
    for datatype in DATATYPES:
        element_type = _onnx_element_type(datatype)
        source, target = echo_input_name(datatype.v2), echo_output_name(datatype.v2)
        inputs.append(helper.make_tensor_value_info(source, element_type, [BATCH, ECHO_WIDTH]))
        outputs.append(helper.make_tensor_value_info(target, element_type, [BATCH, ECHO_WIDTH]))
        nodes.append(helper.make_node("Identity", [source], [target], name=f"echo_{datatype.v2.lower()}"))
    graph = helper.make_graph(nodes, "dtype_echo", inputs, outputs)
    return _packaged(graph, task="echo", description="Echoes one [-1, 3] tensor of every V2 datatype.")


def text_normalizer_model() -> tuple[ModelFiles, ManifestDraft]:
    """BYTES `text` [-1] -> StringNormalizer(LOWER) -> BYTES `lowered` [-1]; also INT64 `count` [1] (Shape).

    StringNormalizer's default locale is en_US.UTF-8, which slim images (this one, Lambda's) often lack and
    onnxruntime then refuses the session; C.UTF-8 is built into glibc and still lower-cases non-ASCII.
    """
    graph = helper.make_graph(
        [
            helper.make_node(
                "StringNormalizer",
                ["text"],
                ["lowered"],
                name="lower",
                case_change_action="LOWER",
                is_case_sensitive=1,
                locale=TEXT_LOCALE,
            ),
            helper.make_node("Shape", ["text"], ["count"], name="count"),
        ],
        "text_normalizer",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [BATCH])],
        [
            helper.make_tensor_value_info("lowered", TensorProto.STRING, [BATCH]),
            helper.make_tensor_value_info("count", TensorProto.INT64, [1]),
        ],
    )
    return _packaged(graph, task="text-normalization", description="Lower-cases each string.")


def wordpiece_tokenizer_json() -> bytes:
    """A tiny BERT-style tokenizer.json, built as the Hugging Face BERT tokenizers are: lower-casing and
    accent-stripping normalizer, BERT pre-tokenizer, WordPiece, and the template "[CLS] $A [SEP]"."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {token: index for index, token in enumerate(WORDPIECE_VOCAB)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer.to_str().encode()


def token_stats_model(
    *, id_type: int = TensorProto.INT64, max_length: int = TOKEN_STATS_MAX_LENGTH
) -> tuple[ModelFiles, ManifestDraft]:
    """Text in through the tokenizer; the graph shows what it was fed.

    `input_ids` and `attention_mask` [-1, -1] -> `token_ids` (the ids, as INT64) and `lengths` INT64 [-1]
    (the tokens that are not padding, ReduceSum of the mask).
    """
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["token_ids"], name="ids", to=TensorProto.INT64),
            helper.make_node("Cast", ["attention_mask"], ["mask64"], name="mask", to=TensorProto.INT64),
            helper.make_node("ReduceSum", ["mask64", "tokens_axis"], ["lengths"], name="lengths", keepdims=0),
        ],
        "token_stats",
        [
            helper.make_tensor_value_info("input_ids", id_type, [BATCH, "tokens"]),
            helper.make_tensor_value_info("attention_mask", id_type, [BATCH, "tokens"]),
        ],
        [
            helper.make_tensor_value_info("token_ids", TensorProto.INT64, [BATCH, "tokens"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, [BATCH]),
        ],
        initializer=[helper.make_tensor("tokens_axis", TensorProto.INT64, [1], [1])],
    )
    files, draft = _packaged(
        graph, task="text-token-stats", description="Token ids and lengths of each text."
    )
    tokenizer = TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=max_length)
    draft = ManifestDraft.model_validate(
        {**draft.model_dump(), "preprocessing": Preprocessing(tokenizer=tokenizer).model_dump()}
    )
    return {**files, TOKENIZER_FILE: wordpiece_tokenizer_json()}, draft


def bag_of_words_model(
    weights: npt.NDArray[np.float32], *, id_type: int = TensorProto.INT64
) -> tuple[ModelFiles, ManifestDraft]:
    """Text in, two class logits out: each attended token adds its row of `weights` [vocab, 2].

    Linear in the tokens, so ablating one token changes a logit by exactly its weight less the weight of
    the token replacing it: explanations have a known answer."""
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["weights", "input_ids"], ["per_token"], name="lookup", axis=0),
            helper.make_node("Cast", ["attention_mask"], ["mask"], name="mask", to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"], name="expand"),
            helper.make_node("Mul", ["per_token", "mask3"], ["attended"], name="attend"),
            helper.make_node("ReduceSum", ["attended", "tokens_axis"], ["logits"], name="sum", keepdims=0),
        ],
        "bag_of_words",
        [
            helper.make_tensor_value_info("input_ids", id_type, [BATCH, "tokens"]),
            helper.make_tensor_value_info("attention_mask", id_type, [BATCH, "tokens"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [BATCH, 2])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "weights"),
            helper.make_tensor("last_axis", TensorProto.INT64, [1], [2]),
            helper.make_tensor("tokens_axis", TensorProto.INT64, [1], [1]),
        ],
    )
    files, draft = _packaged(graph, task="classification", description="Summed token weights.")
    tokenizer = TokenizerPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=32)
    draft = ManifestDraft.model_validate(
        {
            **draft.model_dump(),
            "labels": ["negative", "positive"],
            "preprocessing": Preprocessing(tokenizer=tokenizer).model_dump(),
        }
    )
    return {**files, TOKENIZER_FILE: wordpiece_tokenizer_json()}, draft


def batch_sum_model() -> tuple[ModelFiles, ManifestDraft]:
    """FP32 `input` [-1, 10] -> `total` [1, 1], the sum over the whole batch: no output row per input row."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["input"], ["total"], name="sum", keepdims=1)],
        "batch_sum",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [BATCH, 10])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [1, 1])],
    )
    return _packaged(graph, task="regression", description="The sum of every element of the batch.")


def pair_sum_model() -> tuple[ModelFiles, ManifestDraft]:
    """FP32 `a` [-1, 2] + `b` [-1, 2] -> `sum` [-1, 2]: two free batch dimensions the graph needs equal,
    which a signature's -1 cannot say, so only onnxruntime finds a mismatch."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"], name="add")],
        "pair_sum",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["rows_a", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["rows_b", 2]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["rows", 2])],
    )
    return _packaged(graph, task="regression", description="Two inputs added row by row.")


def slow_chain_model(width: int = SLOW_WIDTH, layers: int = SLOW_LAYERS) -> tuple[ModelFiles, ManifestDraft]:
    """FP32 `x` [-1, width] -> Expand to [width, width] -> `layers` MatMuls by one shared weight -> ReduceSum
    -> `y` [1, 1], for time budget tests.

    Each MatMul is 2 * width^3 flops, so the run takes hundreds of milliseconds while the request and
    answer stay tiny. The weight averages each row, so every layer keeps the values (and y = width^2 * x)."""
    weight = numpy_helper.from_array(np.full((width, width), 1.0 / width, dtype=np.float32), "w")
    square = numpy_helper.from_array(np.array([width, width], dtype=np.int64), "square")
    nodes = [helper.make_node("Expand", ["x", "square"], ["h0"], name="expand")]
    nodes += [
        helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"], name=f"matmul{i}") for i in range(layers)
    ]
    nodes.append(helper.make_node("ReduceSum", [f"h{layers}"], ["y"], name="sum", keepdims=1))
    graph = helper.make_graph(
        nodes,
        "slow_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=[weight, square],
    )
    return _packaged(graph, task="benchmark", description="A chain of large MatMuls: slow on purpose.")


def _onnx_element_type(datatype: Datatype) -> int:
    if datatype.v2 == "BYTES":
        return int(TensorProto.STRING)
    return int(helper.np_dtype_to_tensor_dtype(datatype.numpy))


def _packaged(graph: onnx.GraphProto, *, task: str, description: str) -> tuple[ModelFiles, ManifestDraft]:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="maas-tests",
    )
    onnx.checker.check_model(model, full_check=True)
    content: bytes = model.SerializeToString()
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    draft = ManifestDraft(
        task=task, description=description, model_file=MODEL_FILE, signature=signature_of(session)
    )
    return {MODEL_FILE: content}, draft
