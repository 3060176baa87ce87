"""Real ONNX graphs and raw registry writes for supply-chain tests.

`plant_version` writes a version straight to the bucket with correct checksums, as someone with write access
to it (or a publisher with a bug) could: what the runtime must then refuse is the content, not the upload.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from maas.registry import ManifestDraft, Signature, TensorSpec
from maas.registry.manifest import MANIFEST_FILE, MODEL_FILE, describe_artifact

OPSET = 17
IR_VERSION = 8
WIDTH = 4
DATA_FILE = "weights.bin"
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
SIGNATURE = Signature(
    inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, WIDTH])],
    outputs=[TensorSpec(name="y", datatype="FP32", shape=[-1, WIDTH])],
)


def add_weights_graph(location: str | None = None, *, in_subgraph: bool = False) -> bytes:
    """y = x + w. With `location`, w is external data at that location (offset 0, 16 bytes).

    `in_subgraph` puts w inside a Constant node of an If branch, where a scan of top-level initializers
    alone would miss it."""
    weights = numpy_helper.from_array(WEIGHTS, "w")
    if location is not None:
        weights.ClearField("raw_data")
        weights.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(WEIGHTS.nbytes))):
            entry = weights.external_data.add()
            entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])
    if in_subgraph:
        branch_out = helper.make_tensor_value_info("w_branch", TensorProto.FLOAT, [WIDTH])
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["w_branch"], value=weights)], "branch", [], [branch_out]
        )
        nodes = [
            helper.make_node(
                "Constant", [], ["cond"], value=helper.make_tensor("c", TensorProto.BOOL, [], [1])
            ),
            helper.make_node("If", ["cond"], ["w"], then_branch=branch, else_branch=branch),
            helper.make_node("Add", ["x", "w"], ["y"]),
        ]
        graph = helper.make_graph(nodes, "add_weights", [x], [y])
    else:
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["y"])], "add_weights", [x], [y], [weights]
        )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="maas-tests",
    )
    content: bytes = model.SerializeToString()
    return content


def add_weights_files(location: str | None = DATA_FILE) -> tuple[dict[str, bytes], ManifestDraft]:
    """A publishable model: the graph, and its weights in `location` when they are external."""
    files = {MODEL_FILE: add_weights_graph(location)}
    data_files = [] if location is None else [location]
    if location is not None:
        files[location] = WEIGHTS.tobytes()
    draft = ManifestDraft(task="echo", signature=SIGNATURE, model_data_files=data_files)
    return files, draft


def plant_version(
    s3: Any, bucket: str, name: str, version: int, files: dict[str, bytes], draft: ManifestDraft
) -> None:
    """Write a committed version directly, with correct sha256s in its manifest, skipping publish's checks."""
    artifacts = [describe_artifact(path, data) for path, data in files.items()]
    manifest = draft.commit(name, version, artifacts)
    prefix = f"models/{name}/versions/{version}/"
    for path, data in files.items():
        s3.put_object(Bucket=bucket, Key=prefix + path, Body=data)
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST_FILE, Body=manifest.model_dump_json(indent=2).encode())
