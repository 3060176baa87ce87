"""A model whose weights are ONNX external data, laid out as large models are published: a chain of fp32
MatMuls, each weight at a 4 KiB-aligned offset of one `model.onnx.data` beside the graph. Sized in MiB, so
the load budgets' tests can ask for a model of a few MB.

Every weight is the identity, so the answer equals the input whichever way the session holds them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from maas.registry import Manifest, ManifestDraft, Signature, TensorSpec
from maas.registry.manifest import MODEL_FILE
from tests.support.aws import TEST_BUCKET

DATA_FILE = "model.onnx.data"
CHAIN_WIDTH = 256
# onnxruntime maps external data whose offset is a multiple of the page size, as the builders align it.
ALIGNMENT = 4096
OPSET = 17
IR_VERSION = 8
MiB = 1024 * 1024


def chain_signature(width: int = CHAIN_WIDTH) -> Signature:
    return Signature(
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, width])],
        outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, width])],
    )


def matmul_chain_model(
    mib: int = 4,
    *,
    width: int = CHAIN_WIDTH,
    weight_loading: Literal["mapped", "prepacked"] | None = None,
) -> tuple[dict[str, bytes], ManifestDraft]:
    """`x` [-1, width] -> MatMuls by `mib` MiB of identity weights -> `y`, the weights in DATA_FILE."""
    layer_bytes = width * width * 4
    layers = max(1, mib * MiB // layer_bytes)
    weight = np.eye(width, dtype=np.float32).tobytes()
    data = bytearray()
    initializers, nodes = [], []
    previous = "x"
    for layer in range(layers):
        tensor = onnx.TensorProto(name=f"w{layer}", data_type=TensorProto.FLOAT, dims=[width, width])
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", DATA_FILE), ("offset", str(len(data))), ("length", str(layer_bytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        data += weight
        data += bytes(-len(data) % ALIGNMENT)
        output = "y" if layer == layers - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{layer}"], [output], name=f"matmul{layer}"))
        initializers.append(tensor)
        previous = output
    graph = helper.make_graph(
        nodes,
        "matmul_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="maas-tests",
    )
    draft = ManifestDraft(
        task="regression",
        description="An identity chain of MatMuls with external data.",
        model_file=MODEL_FILE,
        model_data_files=[DATA_FILE],
        signature=chain_signature(width),
        weight_loading=weight_loading,
    )
    return {MODEL_FILE: model.SerializeToString(), DATA_FILE: bytes(data)}, draft


def flip_last_bit(s3: Any, key: str, *, at: int = -1) -> None:
    """Change one bit of the stored object at `key` (of its last byte, or of byte `at`), as a bad disk or
    someone with write access to the bucket could: the same size, another sha256."""
    body = bytearray(s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read())
    body[at] ^= 1
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=bytes(body))


def use_own_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make a folder of `tmp_path` the temp dir loads put their private folders in, for this test alone:
    under parallel workers another test's load of the same name and version would otherwise show up."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def private_folders(manifest: Manifest) -> list[Path]:
    """The version's private load folders (`maas-<name>-v<version>-*`) left in the temp dir."""
    return list(Path(tempfile.gettempdir()).glob(f"maas-{manifest.name}-v{manifest.version}-*"))
