"""Token attributions for text models: each token of a text replaced in turn by [MASK] (or padding).

A text model is tokenized once, so the explanation's perturbations start from the ids its predictions ran
on; only a text's own tokens are explained, never the special tokens or the padding around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.errors import InvalidInput
from maas.explain.baselines import replacement_token
from maas.explain.batching import Evaluations, Perturbed, evaluate
from maas.explain.parameters import ExplainParameters
from maas.runtime import token_rows_per_run
from maas.runtime.text import TokenizedTexts


@dataclass(frozen=True, slots=True)
class TokenAttributions:
    """The text input's [N, T] tokens (BYTES, "" past a text's end) and their FP32 attributions, T the
    longest text's tokens."""

    input: str
    tokens: npt.NDArray[np.object_]
    attributions: npt.NDArray[np.float32]
    settings: dict[str, Any]


def explain_text(
    evaluations: Evaluations, encoded: TokenizedTexts, parameters: ExplainParameters
) -> TokenAttributions:
    """Each token's attribution: the score lost when it alone is replaced (Captum's FeatureAblation)."""
    model = evaluations.model
    tokenizer = model.tokenizer
    assert tokenizer is not None
    if parameters.method != "ablation":
        raise InvalidInput(
            f"parameters.method: model '{model.name}' takes text, which is explained by token "
            f"ablation; expected 'ablation', got '{parameters.method}'"
        )
    for field in ("feature_mask", "window", "stride"):
        if getattr(parameters, field) is not None:
            raise InvalidInput(f"parameters.{field}: not used for text, which is explained token by token")
    replacement = replacement_token(parameters.baseline, tokenizer.mask_id, tokenizer.pad_id)
    ids_name = tokenizer.preprocessing.input_ids
    ids = encoded.feeds[ids_name]
    rows, width = ids.shape
    # Each text's jobs: the unperturbed ids (position -1), then one job per token of its own.
    position_of_job = (
        np.concatenate([np.array([-1, *content], dtype=np.int64) for content in encoded.content])
        if rows
        else np.zeros(0, dtype=np.int64)
    )
    counts = [len(content) + 1 for content in encoded.content]
    total = len(position_of_job)
    evaluations.check_budget(total, f"{rows:,} texts: their {total - rows:,} tokens + 1 unperturbed run each")
    columns = np.arange(width)
    graph_specs = {spec.name: spec for spec in model.manifest.signature.inputs}
    perturbed = [
        Perturbed(
            ids_name,
            ids,
            np.full_like(ids, replacement),
            (width,),
            graph_specs[ids_name].shape[0],
        )
    ]
    fixed = {key: value for key, value in encoded.feeds.items() if key != ids_name}
    scores, runs = evaluate(
        evaluations,
        perturbed,
        fixed,
        row_of_job=np.repeat(np.arange(rows), counts),
        masks_of_jobs=lambda jobs: columns[None, :] == position_of_job[jobs][:, None],
        max_rows=token_rows_per_run(width),
    )
    longest = max((len(content) for content in encoded.content), default=0)
    tokens = np.full((rows, longest), "", dtype=object)
    attribution = np.zeros((rows, longest), dtype=np.float32)
    start = 0
    for row, content in enumerate(encoded.content):
        own = scores[start : start + len(content) + 1]
        start += len(content) + 1
        tokens[row, : len(content)] = encoded.tokens[row]
        attribution[row, : len(content)] = own[0] - own[1:]
    return TokenAttributions(
        tokenizer.input_name,
        tokens,
        attribution,
        {
            "method": "ablation",
            "unit": "token",
            "baseline": "mask" if replacement == tokenizer.mask_id else "pad",
            "evaluations": total,
            "model_runs": runs,
        },
    )
