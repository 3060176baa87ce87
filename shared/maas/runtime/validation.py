"""Checks a request against a model's signature before onnxruntime sees it.

Strict in the way Triton is (names, datatypes, ranks, fixed dimensions), and every message names the
tensor, what the model expects and what arrived, without echoing tensor values.
"""

from __future__ import annotations

from collections.abc import Sequence

from maas.errors import InvalidInput
from maas.infer_types import Tensor
from maas.signature import Signature, TensorSpec

MAX_ECHOED_NAME = 64


def check_inputs(model: str, signature: Signature, inputs: Sequence[Tensor]) -> None:
    expected = {spec.name: spec for spec in signature.inputs}
    seen: set[str] = set()
    for tensor in inputs:
        spec = expected.get(tensor.name)
        if spec is None:
            raise InvalidInput(
                f"inputs: expected names among {sorted(expected)} for model '{model}', "
                f"got unknown input {_name(tensor.name)}"
            )
        if tensor.name in seen:
            raise InvalidInput(f"inputs: expected each input once, got input {_name(tensor.name)} twice")
        seen.add(tensor.name)
        _check_tensor(spec, tensor)
    missing = [name for name in expected if name not in seen]
    if missing:
        raise InvalidInput(f"inputs: model '{model}' expects inputs {list(expected)}, missing {missing}")


def check_requested_outputs(model: str, signature: Signature, requested: Sequence[str] | None) -> list[str]:
    names = [spec.name for spec in signature.outputs]
    if requested is None:
        return names
    known = set(names)
    for name in requested:
        if name not in known:
            raise InvalidInput(
                f"outputs: expected names among {names} for model '{model}', got unknown output {_name(name)}"
            )
    return list(dict.fromkeys(requested))


def _check_tensor(spec: TensorSpec, tensor: Tensor) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidInput(f"input '{spec.name}': expected datatype {spec.datatype}, got {tensor.datatype}")
    shape = tensor.shape
    if len(shape) != len(spec.shape) or any(
        want >= 0 and want != got for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidInput(f"input '{spec.name}': expected shape {spec.shape} (-1 = any size), got {shape}")
    if 0 in shape and 0 not in spec.shape:
        # A batch of no rows, or rows of no values: nothing to run the model on. Refused on every path
        # alike, as V1's empty instances and an explanation of no rows are; onnxruntime would fail on
        # some graphs and answer others.
        raise InvalidInput(
            f"input '{spec.name}': expected at least one row and no empty dimension, got shape {shape}"
        )


def _name(name: str) -> str:
    return repr(name) if len(name) <= MAX_ECHOED_NAME else f"a name of {len(name)} characters"
