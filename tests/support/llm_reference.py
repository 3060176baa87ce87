"""The raw onnxruntime greedy loop (maas.generation.reference) over the folder a version was published from,
the baseline a served temperature-0 generation must match token for token."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from maas.generation.reference import greedy_reference
from maas.registry import Manifest


def reference_tokens(
    manifest: Manifest, folder: Path, prompt_ids: Sequence[int], max_tokens: int, scratch: Path
) -> list[int]:
    """Greedy tokens of `prompt_ids` (an end-of-sequence token included, as the served path counts it).

    The loop reads the builder's genai_config.json, which a published folder leaves out (the manifest's
    `generation` is the one decoding contract), so `scratch` gets the graph beside one written from it."""
    generation = manifest.generation
    assert generation is not None, f"{manifest.name} v{manifest.version} is not a text generator"
    for name in (manifest.model_file, *manifest.model_data_files):
        (scratch / name).symlink_to(folder / name)
    decoder = {
        "num_hidden_layers": generation.num_layers,
        "num_key_value_heads": generation.num_kv_heads,
        "head_size": generation.head_size,
        "inputs": {"past_key_names": generation.past_key, "past_value_names": generation.past_value},
        "outputs": {
            "present_key_names": generation.present_key,
            "present_value_names": generation.present_value,
        },
    }
    (scratch / "genai_config.json").write_text(json.dumps({"model": {"decoder": decoder}}))
    run = greedy_reference(scratch, prompt_ids, max_tokens, eos_token_ids=generation.eos_token_ids, threads=1)
    return run.tokens
