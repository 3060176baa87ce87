"""The request bodies the OpenAPI document offers as examples, so Swagger UI's "Try it out" sends a request
that works as it stands: each fits seed-mlp (one FP32 input `input` of shape [-1, 10]), the model that
`make serve` publishes, and the path parameters' examples name it."""

from __future__ import annotations

from typing import Any

EXAMPLE_MODEL = "seed-mlp"
EXAMPLE_VERSION = "1"
_ROW = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
_V2_INPUTS = [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": _ROW}]
# seed-mlp's output is 10 scores with no class labels, so the explained index must be named.
_EXPLAIN_PARAMETERS = {"method": "ablation", "target": 3, "baseline": "zeros"}

V2_INFER: dict[str, Any] = {"inputs": _V2_INPUTS}
V2_EXPLAIN: dict[str, Any] = {"inputs": _V2_INPUTS, "parameters": _EXPLAIN_PARAMETERS}
V1_PREDICT: dict[str, Any] = {"instances": [_ROW]}
V1_EXPLAIN: dict[str, Any] = {"instances": [_ROW], "parameters": _EXPLAIN_PARAMETERS}
