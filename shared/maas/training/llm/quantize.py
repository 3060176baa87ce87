"""The gate an int8 or int4 decoder passes before it is published beside its fp32 version.

Two measurements against the fp32 graph (never against torch: quantization is judged by what it changes
in what would be served):
- perplexity on the held-out text may rise by at most `max_increase`, a fraction of fp32's (1% for int8,
  25% for int4);
- teacher-forced greedy agreement on fp32's 5 x 32 greedy reply tokens (see maas.training.llm.checks)
  must reach `min_agreement`. Perplexity averages over every token; agreement asks the question a user of
  temperature 0 asks, whether the model still picks the same word. The thresholds (0.9 for int8, 0.75 for
  int4) were set before measuring; SmolLM2's published builds score 0.958 and 0.832, and a broken graph
  scores near 0, so they catch damage without flapping on near-ties.

The manifest's `Quantization` records perplexity against fp32, with the allowed rise in perplexity units
(`max_degradation` = fp32 x `max_increase`), so `ensure_publishable` re-checks it like any other
quantized version; the agreement is in the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from maas.errors import InvalidInput
from maas.registry import Quantization

PERPLEXITY = "perplexity"
GREEDY_AGREEMENT = "greedy_agreement"


@dataclass(frozen=True)
class QuantizationGate:
    precision: Literal["int8", "int4"]
    # The largest relative rise in held-out perplexity, e.g. 0.01 for 1%.
    max_increase: float
    min_agreement: float

    def __post_init__(self) -> None:
        if not self.max_increase >= 0:
            raise InvalidInput(f"max_degradation: expected a fraction >= 0, got {self.max_increase!r}")
        if not 0 <= self.min_agreement <= 1:
            raise InvalidInput(f"min_agreement: expected a share in [0, 1], got {self.min_agreement!r}")

    @property
    def scheme(self) -> Literal["int8-weight-only", "int4-weight-only"]:
        return "int8-weight-only" if self.precision == "int8" else "int4-weight-only"

    def judge(self, *, fp32_perplexity: float, perplexity: float, agreement: float) -> str | None:
        """Why the quantized graph is refused, with its numbers; None when it passes."""
        reasons: list[str] = []
        limit = fp32_perplexity * (1 + self.max_increase)
        if not perplexity <= limit:
            reasons.append(
                f"expected held-out perplexity at most {limit:.6g} (fp32 {fp32_perplexity:.6g} "
                f"+ {self.max_increase:.0%}), got {perplexity:.6g} "
                f"({perplexity / fp32_perplexity - 1:+.2%})"
            )
        if not agreement >= self.min_agreement:
            reasons.append(
                f"expected greedy agreement with fp32 of at least {self.min_agreement:.0%}, "
                f"got {agreement:.1%}"
            )
        if not reasons:
            return None
        return f"quantization ({self.precision}, {self.scheme}): " + "; ".join(reasons)

    def record(self, *, fp32_perplexity: float, perplexity: float) -> Quantization:
        return Quantization(
            scheme=self.scheme,
            # Block-wise scales (32 weights per scale), not one per output channel.
            per_channel=False,
            metric=PERPLEXITY,
            fp32_value=fp32_perplexity,
            quantized_value=perplexity,
            delta=perplexity - fp32_perplexity,
            max_degradation=fp32_perplexity * self.max_increase,
        )


DEFAULT_GATES: dict[str, QuantizationGate] = {
    "int8": QuantizationGate("int8", max_increase=0.01, min_agreement=0.9),
    "int4": QuantizationGate("int4", max_increase=0.25, min_agreement=0.75),
}
