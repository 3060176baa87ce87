"""The version manifest: what a version is, how it was made and how good it is.

It is written last, so its presence is the commit point of a version.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from maas.signature import Signature, TensorSpec

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
HASH_CHUNK_BYTES = 1 << 20
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Relative, no "..", no leading "/" or ".": artifacts are written beside each other on load, so a
# manifest must never be able to name a file outside its version folder.
SAFE_RELATIVE_PATH = (
    r"^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*(/[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*)*$"
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactParts(_Frozen):
    """The artifact cut into consecutive parts of `bytes` each (the last may be shorter), with each part's
    sha256 in order. They are the multipart upload's parts, so S3 holds the same checksums, and the ranges a
    cold start fetches in parallel and checks as each one lands: no second read of a large file."""

    bytes: int = Field(ge=1)
    sha256: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _digests_are_sha256(self) -> ArtifactParts:
        if not all(SHA256_HEX.match(digest) for digest in self.sha256):
            raise ValueError("parts: expected every sha256 as 64 lowercase hex digits")
        return self

    def ranges(self, total_bytes: int) -> list[tuple[int, int]]:
        """(offset, length) of each part of an artifact of `total_bytes`."""
        return [(start, min(self.bytes, total_bytes - start)) for start in range(0, total_bytes, self.bytes)]


class Artifact(_Frozen):
    path: str = Field(pattern=SAFE_RELATIVE_PATH)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    # Set for an artifact uploaded in parts (a large one). A download checks each part against these as it
    # lands and does not read the file again for the whole-file sha256 above, which stays for tools that hash
    # the file (decision 0021); the manifest, and its signature, covers both.
    parts: ArtifactParts | None = None

    @model_validator(mode="after")
    def _parts_cover_the_file(self) -> Artifact:
        if self.parts is not None:
            expected = -(-self.bytes // self.parts.bytes)
            if len(self.parts.sha256) != expected:
                raise ValueError(
                    f"artifact {self.path!r}: expected {expected} part checksums for {self.bytes} bytes in "
                    f"parts of {self.parts.bytes}, got {len(self.parts.sha256)}"
                )
        return self


class Parity(_Frozen):
    """Torch against onnxruntime on held-out data, measured before publishing."""

    max_abs_diff: float
    tolerance: float
    samples: int
    passed: bool


class Lineage(_Frozen):
    recipe: str | None = None
    dataset_hash: str | None = None
    code_version: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    seed: int | None = None


class Normalization(_Frozen):
    """Per-feature statistics fitted on the training split only and applied inside the graph.

    Clients send raw values; these are recorded so a reader (or an explainer's baseline) knows them."""

    input: str
    mean: list[float]
    std: list[float]


class TokenizerPreprocessing(_Frozen):
    """Text in, token ids out: the runtime tokenizes a BYTES input with `tokenizers` before the graph runs.

    Clients see one input, `text_input`, a batch of UTF-8 strings; the graph sees the id tensors."""

    tokenizer_file: str = Field(pattern=SAFE_RELATIVE_PATH)
    text_input: str = "text"
    max_length: int = Field(ge=1)
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    token_type_ids: str | None = None

    def graph_inputs(self) -> list[str]:
        names = [self.input_ids, self.attention_mask]
        return [*names, self.token_type_ids] if self.token_type_ids else names


class Preprocessing(_Frozen):
    """What the graph expects of client inputs, and what is done to them before the first layer."""

    description: str = ""
    normalization: list[Normalization] = Field(default_factory=list)
    tokenizer: TokenizerPreprocessing | None = None


class GenerationDefaults(_Frozen):
    """Sampling values a request that names none gets: the model's own generation config where it has one."""

    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    # 0: no top-k cut.
    top_k: int = Field(default=0, ge=0)
    # Completion tokens when a request sets no max_tokens (capped by what the context leaves).
    max_tokens: int = Field(default=256, ge=1)


class Generation(_Frozen):
    """A text generator's decoding contract: what the serving loop needs besides the graph.

    The graph is a decoder with its KV cache as explicit inputs and outputs, named by the patterns below
    with the layer number for %d (onnxruntime-genai's builder layout, decision 0019). The tokenizer and the
    chat template are artifacts of the version, checksummed like the graph."""

    tokenizer_file: str = Field(default="tokenizer.json", pattern=SAFE_RELATIVE_PATH)
    # A Jinja template over `messages`, as the model defines it; None: the model takes no chat.
    chat_template_file: str | None = Field(default="chat_template.jinja", pattern=SAFE_RELATIVE_PATH)
    context_length: int = Field(ge=1)
    num_layers: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_size: int = Field(ge=1)
    kv_datatype: Literal["FP32", "FP16"] = "FP32"
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"
    logits: str = "logits"
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"
    # The graph may read its past from and write its present into one preallocated buffer per layer
    # (GroupQueryAttention's shared-buffer mode), so the cache is never copied between steps.
    kv_shared_buffer: bool = True
    bos_token: str | None = None
    eos_token: str | None = None
    bos_token_id: int | None = None
    # Generation ends at any of these ids.
    eos_token_ids: list[int] = Field(min_length=1)
    pad_token_id: int | None = None
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)

    def artifact_files(self) -> list[str]:
        files = [self.tokenizer_file]
        return [*files, self.chat_template_file] if self.chat_template_file else files


class Quantization(_Frozen):
    """How a quantized version differs from the fp32 one it was made from, measured on the same test set.

    int8-dynamic: onnxruntime's dynamic quantization (weights int8, activations quantized on the fly).
    int8-weight-only / int4-weight-only: block-wise weight quantization into MatMulNBits (the LLM path)."""

    scheme: Literal["int8-dynamic", "int8-weight-only", "int4-weight-only"] = "int8-dynamic"
    per_channel: bool
    metric: str
    fp32_value: float
    quantized_value: float
    # quantized - fp32; its sign is good or bad by the metric's goal.
    delta: float
    # The largest degradation (in the metric's bad direction) allowed when it was published.
    max_degradation: float
    # The fp32 version, once the registry has numbered it.
    base_version: int | None = None


class FeatureImportance(_Frozen):
    """One feature's permutation importance: how much the primary metric worsens when it is shuffled."""

    feature: str
    # Mean and standard deviation over the repeats, in the metric's units; positive means it matters.
    importance: float
    std: float


class GlobalImportance(_Frozen):
    """Permutation feature importance on the test set, measured through onnxruntime when publishing."""

    method: Literal["permutation"] = "permutation"
    metric: str
    goal: Literal["minimize", "maximize"]
    # The metric on the unshuffled test set, which every importance is relative to.
    baseline_value: float
    repeats: int
    seed: int
    samples: int
    # Most important first.
    features: list[FeatureImportance]


# The fields a draft and its manifest share are defined once, in the mixins below. pydantic orders a
# model's fields from its last base to its first, and that order is the manifest's JSON, whose exact bytes a
# signature covers: so the bases of Manifest and ManifestDraft are listed last field group first.


class _Registration(_Frozen):
    """What the registry assigns when it commits a version."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str
    version: int
    created_at: str
    status: Literal["ready", "archived"] = "ready"


class _Graph(_Frozen):
    """What the version is: its task, the graph's files and its signature."""

    task: str | None = None
    description: str = ""
    model_file: str = Field(default=MODEL_FILE, pattern=SAFE_RELATIVE_PATH)
    # Files the graph references as ONNX external data; they must sit beside model_file at load time.
    model_data_files: list[str] = Field(default_factory=list)
    signature: Signature
    # How a session holds the weights: "mapped" keeps the external data memory-mapped from the load folder
    # (session.disable_prepacking), "prepacked" lets onnxruntime copy them into its packed layout. None leaves
    # it to the serving function's rule (by size; see the runtime's load).
    weight_loading: Literal["mapped", "prepacked"] | None = None


class _Artifacts(_Frozen):
    artifacts: list[Artifact]


class _Provenance(_Frozen):
    """How the version was made and how good it is."""

    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    parity: Parity | None = None
    labels: list[str] | None = None
    # What a promotion compares: e.g. "mse" with "minimize". None disables the regression gate.
    primary_metric: str | None = None
    primary_metric_goal: Literal["minimize", "maximize"] = "minimize"
    # Structured results that are not one number: per-class metrics, the confusion matrix.
    evaluation: dict[str, Any] = Field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    quantization: Quantization | None = None
    # Per input, the training split's mean of each element of one row (flattened in C order), or one value
    # for the whole input: what an explanation's "mean" baseline replaces features with.
    input_means: dict[str, list[float]] = Field(default_factory=dict)
    feature_importance: GlobalImportance | None = None
    # Set for a text generator (task "text-generation"): how the serving loop decodes it.
    generation: Generation | None = None


class Manifest(_Provenance, _Artifacts, _Graph, _Registration):
    @model_validator(mode="after")
    def _graph_files_are_artifacts(self) -> Manifest:
        paths = {a.path for a in self.artifacts}
        missing = [path for path in self.graph_files if path not in paths]
        if missing:
            raise ValueError(f"graph files {missing} are not listed among the artifacts")
        tokenizer = self.tokenizer
        if tokenizer is not None:
            if tokenizer.tokenizer_file not in paths:
                raise ValueError(
                    f"tokenizer file {tokenizer.tokenizer_file!r} is not listed among the artifacts"
                )
            graph_inputs = sorted(spec.name for spec in self.signature.inputs)
            if sorted(tokenizer.graph_inputs()) != graph_inputs:
                raise ValueError(
                    f"tokenizer feeds {sorted(tokenizer.graph_inputs())}, "
                    f"but the graph's inputs are {graph_inputs}"
                )
        if self.generation is not None:
            unlisted = [path for path in self.generation.artifact_files() if path not in paths]
            if unlisted:
                raise ValueError(f"generation files {unlisted} are not listed among the artifacts")
        return self

    @property
    def tokenizer(self) -> TokenizerPreprocessing | None:
        return self.preprocessing.tokenizer if self.preprocessing is not None else None

    @property
    def serving_signature(self) -> Signature:
        """What clients send and receive: the graph's, except that a tokenized model takes text."""
        return serving_signature(self.signature, self.preprocessing)

    @property
    def report_files(self) -> list[str]:
        """The model card and its plots, in the order they were published."""
        return [a.path for a in self.artifacts if a.path.endswith((".md", ".png"))]

    def artifact(self, path: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.path == path:
                return artifact
        raise KeyError(path)

    @property
    def total_bytes(self) -> int:
        return sum(a.bytes for a in self.artifacts)

    @property
    def graph_files(self) -> list[str]:
        return [self.model_file, *self.model_data_files]


class ManifestDraft(_Provenance, _Graph):
    """Everything the publisher knows before the registry assigns a version and checksums."""

    # Only publishing builds one, offline: no function should pay its build at import.
    model_config = ConfigDict(defer_build=True)

    def commit(self, name: str, version: int, artifacts: list[Artifact]) -> Manifest:
        return Manifest(
            name=name,
            version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            artifacts=artifacts,
            **self.model_dump(),
        )


def serving_signature(signature: Signature, preprocessing: Preprocessing | None) -> Signature:
    """The graph's signature as clients see it: a tokenized model takes a batch of texts instead of ids."""
    tokenizer = preprocessing.tokenizer if preprocessing is not None else None
    if tokenizer is None:
        return signature
    text = TensorSpec(name=tokenizer.text_input, datatype="BYTES", shape=[-1])
    return Signature(inputs=[text], outputs=signature.outputs)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe_artifact(path: str, data: bytes) -> Artifact:
    return Artifact(path=path, sha256=sha256_hex(data), bytes=len(data))
