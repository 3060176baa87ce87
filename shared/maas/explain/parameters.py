"""What an explain request may ask for: the `parameters` of a V2 (or KServe V1) request.

One pydantic model validates them (at the adapters) and documents them in the OpenAPI document. It is built
on first use: every function imports it, and only explain requests validate with it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Method = Literal["ablation", "occlusion", "shapley"]
NamedBaseline = Literal["zeros", "mean", "mask", "pad"]
Number = StrictInt | StrictFloat
Baseline = NamedBaseline | Number | list[Any] | dict[str, NamedBaseline | Number | list[Any]] | None
# Captum's default for Shapley value sampling.
DEFAULT_SAMPLES = 25
# Sampling error falls as 1/sqrt(samples): 10,000 permutations is already within 1% of exact.
MAX_SAMPLES = 10_000
# numpy's generators take any non-negative seed; 64 bits is what a client needs and what echoes back short.
MAX_SEED = 2**64 - 1
# A target index or window size beyond this is not echoed in an error message: no row is that long.
MAX_ECHOED_INDEX = 10**12

# How an explanation answers, on every transport: the response parameter holding the method's settings, and
# the suffixes of the tensors added beside the predictions (one attribution per input; a text input's tokens).
EXPLANATION = "explanation"
ATTRIBUTION_SUFFIX = "_attribution"
TOKENS_SUFFIX = "_tokens"


class ExplainParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    method: Method = Field(
        default="ablation",
        description="ablation (per feature or feature_mask group), occlusion (sliding windows) or shapley "
        "(permutation sampling; exact over every permutation with `exact`). Text models take ablation: one "
        "token at a time.",
    )
    target: StrictInt | StrictStr | list[StrictInt | StrictStr] | None = Field(
        default=None,
        description="The output index (or class label) explained, for all rows or one per row. Default: "
        "the predicted class for a classifier, index 0 for a one-value output; required otherwise.",
    )
    output: StrictStr | None = Field(default=None, description="The output explained; default the first.")
    baseline: Baseline = Field(
        default=None,
        description="What an absent feature becomes: 'zeros' (default), 'mean' (the training split's "
        "mean from the manifest), a number, an array shaped like one row (or the whole input), or an "
        "object of those per input. Text: 'mask' (the [MASK] token, the default when the vocabulary has "
        "one) or 'pad'.",
    )
    feature_mask: list[Any] | dict[str, list[Any]] | None = Field(
        default=None,
        description="Integer group ids shaped like one row (or [1, ...row]), per input as an object for "
        "several inputs; elements with the same id are ablated together. Default: every element alone.",
    )
    n_samples: StrictInt = Field(
        default=DEFAULT_SAMPLES, ge=1, le=MAX_SAMPLES, description="shapley: permutations sampled."
    )
    seed: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description="shapley: seeds the permutations (a 64-bit unsigned integer).",
    )
    exact: StrictBool = Field(
        default=False, description="shapley: every permutation (at most 6 feature groups) instead of samples."
    )
    window: StrictInt | list[StrictInt] | None = Field(
        default=None,
        description="occlusion (required): the window's size over the row's last dimensions; an integer is "
        "a square over the last two (one for a 1-D row). Leading dimensions are covered whole.",
    )
    stride: StrictInt | list[StrictInt] | None = Field(
        default=None, description="occlusion: the window's step per dimension; default 1."
    )
    # Parameters any inference request may carry; they keep their meaning here.
    binary_data_output: StrictBool | None = None
    routing_key: StrictStr | StrictInt | None = None
