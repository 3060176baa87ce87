"""A synthetic model of any size: a chain of fp32 MatMuls whose weights are ONNX external data.

It exists to exercise what size does to publishing, downloading and loading (the 2 GB protobuf line, the
memory of a load, the speed of a cold start) without training or downloading a real large model. Nothing
is learned: the weights are seeded noise, so the same seed and size always give the same files.

Numpy and onnx only (no torch), so `maas synthesize`, the acceptance test and the benchmarks build it in
seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from maas.errors import InvalidInput
from maas.registry.manifest import MODEL_FILE

__all__ = [
    "DATA_FILE",
    "DEFAULT_TARGET_BYTES",
    "DEFAULT_WIDTH",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "MatmulChain",
    "build_matmul_chain",
]

DATA_FILE = f"{MODEL_FILE}.data"
# Past protobuf's 2 GiB (2.15 GB) by a clear margin, and within Lambda's 10 GB of memory and /tmp.
DEFAULT_TARGET_BYTES = 2_750_000_000
DEFAULT_WIDTH = 4096
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# onnxruntime maps external data in place only from offsets aligned to the allocation granularity
# (4 KiB on Linux, 64 KiB on Windows); any other offset is copied into private memory.
ALIGNMENT = 64 * 1024
FLOAT32_BYTES = 4
OPSET = 17
IR_VERSION = 8


@dataclass(frozen=True, slots=True)
class MatmulChain:
    """The files of a built chain, and what they hold: `layers` weights of `width` x `width` fp32."""

    folder: Path
    width: int
    layers: int
    seed: int

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def data_path(self) -> Path:
        return self.folder / DATA_FILE

    @property
    def weight_bytes(self) -> int:
        return self.layers * self.width * self.width * FLOAT32_BYTES

    def sample_input(self, rows: int = 1, seed: int = 0) -> np.ndarray:
        """Rows of standard normal noise of the input's width: a request whose answer is not all zeros."""
        return np.random.default_rng(seed).standard_normal((rows, self.width), dtype=np.float32)


def build_matmul_chain(
    folder: Path,
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
) -> MatmulChain:
    """Write model.onnx and model.onnx.data into `folder`: as many `width` x `width` MatMuls as it takes to
    reach `target_bytes` of weights (at least one), all in the one data file.

    Each weight is drawn from `seed`, written and dropped before the next, so building needs one layer's
    memory whatever the size. A layer's weights are uniform in ±sqrt(3 / width), of variance 1 / width, so
    every MatMul keeps the activations' scale: the output of a deep chain is neither zero nor infinite.
    A failed build leaves neither file behind."""
    if width < 1:
        raise InvalidInput(f"width: expected an integer >= 1, got {width}")
    if target_bytes < 1:
        raise InvalidInput(f"target_bytes: expected an integer >= 1, got {target_bytes}")
    layer_bytes = width * width * FLOAT32_BYTES
    chain = MatmulChain(folder, width, max(1, math.ceil(target_bytes / layer_bytes)), seed)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        weights = _write_weights(chain)
        chain.model_path.write_bytes(_graph(chain, weights).SerializeToString())
    except BaseException:
        chain.model_path.unlink(missing_ok=True)
        chain.data_path.unlink(missing_ok=True)
        raise
    return chain


def _write_weights(chain: MatmulChain) -> list[TensorProto]:
    """Append each layer's weights to the data file; their initializers, which point at them."""
    rng = np.random.default_rng(chain.seed)
    bound = np.float32(math.sqrt(3.0 / chain.width))
    layer = np.empty((chain.width, chain.width), dtype=np.float32)
    initializers: list[TensorProto] = []
    offset = 0
    with chain.data_path.open("wb") as data:
        for index in range(chain.layers):
            # In place, in float32 throughout: one layer's buffer, reused for every layer.
            rng.random(out=layer, dtype=np.float32)
            layer -= np.float32(0.5)
            layer *= np.float32(2.0) * bound
            data.write(layer.data)
            initializers.append(_external_initializer(f"weight_{index}", chain.width, offset, layer.nbytes))
            offset += layer.nbytes
            padding = -offset % ALIGNMENT
            if padding and index < chain.layers - 1:
                data.write(bytes(padding))
                offset += padding
    return initializers


def _external_initializer(name: str, width: int, offset: int, length: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[width, width])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", DATA_FILE), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _graph(chain: MatmulChain, weights: list[TensorProto]) -> onnx.ModelProto:
    nodes = []
    previous = INPUT_NAME
    for index, weight in enumerate(weights):
        produced = OUTPUT_NAME if index == len(weights) - 1 else f"hidden_{index}"
        nodes.append(helper.make_node("MatMul", [previous, weight.name], [produced], name=f"matmul_{index}"))
        previous = produced
    graph = helper.make_graph(
        nodes,
        "matmul_chain",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", chain.width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", chain.width])],
        weights,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="maas.training.matmul_chain",
        doc_string=(
            f"Synthetic: {chain.layers} MatMuls of {chain.width}x{chain.width} fp32 seeded noise (seed "
            f"{chain.seed}), weights in {DATA_FILE}. Not trained; for measuring size."
        ),
    )
    return model
