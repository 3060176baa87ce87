"""A Hugging Face decoder folder to an ONNX folder with its KV cache, and the manifest draft describing it.

The graph is built by onnxruntime-genai's model builder (decision 0019): GroupQueryAttention with rotary
inside, the KV cache as explicit inputs and outputs, weights in external data, and MatMulNBits for the
weight-only int8/int4 precisions. It runs as a subprocess because the builder's module imports its
siblings by path, and with the hub off so a local folder can never turn into a download.

The ONNX folder keeps exactly the files a version publishes (`PUBLISHED_FILES`). genai_config.json is
dropped: it is onnxruntime-genai's runtime config, which serving never reads (onnxruntime-genai stays
out of the serving layer); the manifest's `generation` is the one decoding contract, and a second one
with its own defaults (top_k=50 where the model sets none) would only be able to disagree with it.
tokenizer_config.json goes too: the bos/eos/pad tokens it names are in `generation`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from tokenizers import Tokenizer

from maas.errors import InvalidInput
from maas.registry import Generation, GenerationDefaults, ManifestDraft, Parity, Quantization
from maas.registry.manifest import MODEL_FILE, Lineage
from maas.registry.onnx_graph_file import vet_graph_file
from maas.training.errors import ModelCheckFailed
from maas.training.llm.onnx_decoder import open_decoder_session
from maas.training.onnx_checks import plain_file_inside, signature_of

Precision = Literal["fp32", "int8", "int4"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
TASK = "text-generation"
MODEL_DATA_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
GENERATION_CONFIG_FILE = "generation_config.json"
PUBLISHED_FILES = (MODEL_FILE, MODEL_DATA_FILE, TOKENIZER_FILE, CHAT_TEMPLATE_FILE, GENERATION_CONFIG_FILE)
BUILDER_MODULE = "onnxruntime_genai.models.builder"
BUILDER_TIMEOUT_SECONDS = 1800.0
# What a failed build shows of the builder's output: its last lines hold the exception.
_BUILDER_ERROR_CHARS = 2000


def build_onnx(
    hf_folder: Path,
    out_folder: Path,
    precision: Precision = "fp32",
    *,
    options: Mapping[str, str] | None = None,
) -> Path:
    """Export `hf_folder` (config.json, weights, tokenizer) to `out_folder` for the CPU provider.

    `options` are the builder's extra options (e.g. {"accuracy_level": "1"}). Returns `out_folder`, holding
    exactly `PUBLISHED_FILES`."""
    if precision not in PRECISIONS:
        raise InvalidInput(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    for required in ("config.json", TOKENIZER_FILE, GENERATION_CONFIG_FILE):
        if not (hf_folder / required).is_file():
            raise InvalidInput(
                f"{hf_folder}: expected a Hugging Face model folder with {required}, found none"
            )
    if out_folder.exists() and any(out_folder.iterdir()):
        # The folder is pruned to the published files afterwards; never in a folder holding anything else.
        raise InvalidInput(f"{out_folder}: expected a new or empty folder for the export, it holds files")
    out_folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", BUILDER_MODULE, "-i", str(hf_folder), "-o", str(out_folder)]
    command += ["-e", "cpu", "-p", precision]
    if options:
        command += ["--extra_options", *(f"{key}={value}" for key, value in options.items())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="maas-builder-cache-") as cache:
        try:
            result = subprocess.run(
                [*command, "-c", cache],
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILDER_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ModelCheckFailed(
                f"ONNX export: expected the model builder to finish within {BUILDER_TIMEOUT_SECONDS:g} s, "
                "it did not"
            ) from None
    if result.returncode != 0:
        raise ModelCheckFailed(
            f"ONNX export: the model builder ({precision}) failed with exit status {result.returncode}: "
            f"{(result.stdout + result.stderr)[-_BUILDER_ERROR_CHARS:]}"
        )
    shutil.copyfile(hf_folder / GENERATION_CONFIG_FILE, out_folder / GENERATION_CONFIG_FILE)
    for path in out_folder.iterdir():
        if path.name not in PUBLISHED_FILES:
            path.unlink()
    missing = [name for name in PUBLISHED_FILES if not (out_folder / name).is_file()]
    if missing:
        raise ModelCheckFailed(
            f"ONNX export: expected {list(PUBLISHED_FILES)} in {out_folder}, missing {missing}"
        )
    return out_folder


def published_files(onnx_folder: Path) -> dict[str, Path]:
    """The version's files in the folder, as paths the registry streams from disk (the fp32 weights are
    hundreds of MB); symlinks refused: what is published is what was built."""

    def refuse(why: str) -> ModelCheckFailed:
        return ModelCheckFailed(f"{onnx_folder}: expected the exported files there, got {why}")

    return {name: plain_file_inside(onnx_folder, name, refuse) for name in PUBLISHED_FILES}


def generation_of(hf_folder: Path) -> Generation:
    """The decoding contract, from the model's own config.json, generation_config.json and tokenizer.

    A token named in tokenizer_config.json is looked up in tokenizer.json, so an id and its string can
    never disagree; the generation config's sampling values become the defaults."""
    config = _read_json(hf_folder / "config.json")
    generation = _read_json(hf_folder / GENERATION_CONFIG_FILE)
    tokenizer_config = _read_json(hf_folder / "tokenizer_config.json")
    vocab = Tokenizer.from_file(str(hf_folder / TOKENIZER_FILE)).get_vocab(with_added_tokens=True)

    def token_id(role: str) -> int | None:
        token = tokenizer_config.get(f"{role}_token")
        return vocab.get(token) if isinstance(token, str) else None

    eos_ids = _ids(generation.get("eos_token_id", config.get("eos_token_id")))
    if not eos_ids:
        eos = token_id("eos")
        eos_ids = [eos] if eos is not None else []
    if not eos_ids:
        raise ModelCheckFailed(f"{hf_folder}: expected an eos token id in the generation config, found none")
    heads = int(config["num_attention_heads"])
    defaults = {key: generation[key] for key in ("temperature", "top_p", "top_k") if key in generation}
    pad = generation.get("pad_token_id", config.get("pad_token_id"))
    return Generation(
        chat_template_file=CHAT_TEMPLATE_FILE if (hf_folder / CHAT_TEMPLATE_FILE).is_file() else None,
        context_length=int(config["max_position_embeddings"]),
        num_layers=int(config["num_hidden_layers"]),
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_size=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
        bos_token=tokenizer_config.get("bos_token"),
        eos_token=tokenizer_config.get("eos_token"),
        bos_token_id=generation.get("bos_token_id", config.get("bos_token_id")),
        eos_token_ids=eos_ids,
        pad_token_id=pad if isinstance(pad, int) else None,
        defaults=GenerationDefaults(**defaults),
    )


def llm_draft(
    onnx_folder: Path,
    generation: Generation,
    *,
    description: str,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    lineage: Lineage | None = None,
    parity: Parity | None = None,
    quantization: Quantization | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> ManifestDraft:
    """The draft of the version in `onnx_folder`: its signature read from the graph, perplexity as the
    primary metric (lower is better)."""
    signature = signature_of(open_decoder_session(onnx_folder))
    past = next((spec for spec in signature.inputs if spec.name == generation.past_key % 0), None)
    if past is None or past.datatype != generation.kv_datatype:
        raise ModelCheckFailed(
            f"signature: expected input {generation.past_key % 0!r} of datatype {generation.kv_datatype}, "
            f"got {past.datatype if past else 'no such input'}"
        )
    return ManifestDraft(
        task=TASK,
        description=description,
        model_data_files=vet_graph_file(
            (onnx_folder / MODEL_FILE).read_bytes(),
            data_files=PUBLISHED_FILES,
            what=f"ONNX export: {onnx_folder / MODEL_FILE}",
            error=ModelCheckFailed,
        ),
        signature=signature,
        metrics=dict(metrics or {}),
        params=dict(params or {}),
        lineage=lineage or Lineage(),
        parity=parity,
        primary_metric="perplexity",
        primary_metric_goal="minimize",
        quantization=quantization,
        evaluation=dict(evaluation or {}),
        generation=generation,
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ModelCheckFailed(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _ids(value: object) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, int)]
    return []
