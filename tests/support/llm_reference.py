"""The raw onnxruntime greedy loop (maas.generation.reference) over the folder a version was published from,
the baseline a served temperature-0 generation must match token for token."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from maas.generation.reference import greedy_reference
from maas.registry import Manifest


def reference_tokens(
    manifest: Manifest, folder: Path, prompt_ids: Sequence[int], max_tokens: int
) -> list[int]:
    """Greedy tokens of `prompt_ids` (an end-of-sequence token included, as the served path counts it)."""
    generation = manifest.generation
    assert generation is not None, f"{manifest.name} v{manifest.version} is not a text generator"
    run = greedy_reference(
        folder,
        prompt_ids,
        max_tokens,
        generation=generation,
        eos_token_ids=generation.eos_token_ids,
        threads=1,
    )
    return run.tokens
