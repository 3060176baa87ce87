"""Identity graphs for registry tests: a real ONNX graph (publish refuses anything else) that costs nothing
to build, told apart from its siblings by a tag, and the one-call publish the registry tests repeat."""

from __future__ import annotations

from typing import Any

from onnx import TensorProto, helper

from maas.registry import ManifestDraft, ModelRegistry, Signature, TensorSpec
from tests.support.aws import TEST_BUCKET

SIGNATURE = Signature(
    inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 10])],
    outputs=[TensorSpec(name="output", datatype="FP32", shape=[-1, 10])],
)
DRAFT = ManifestDraft(task="regression", signature=SIGNATURE, metrics={"mse": 0.1})


def graph(tag: bytes = b"graph") -> bytes:
    """An Identity graph over [batch, 10] whose doc_string is `tag`, so two tags give two checksums."""
    spec = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 10])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])
    body = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g", [spec], [out])
    model = helper.make_model(body, doc_string=tag.decode())
    content: bytes = model.SerializeToString()
    return content


def publish(registry: ModelRegistry, payload: bytes = b"graph", name: str = "m") -> int:
    """Publish the graph tagged `payload` with a model card as `name`; the new version number."""
    files = {"model.onnx": graph(payload), "card.md": b"# card"}
    return registry.publish(name, files, DRAFT).version


def rival_takes_the_next_number(registry: ModelRegistry, s3: Any) -> None:
    """Between `registry`'s listing of versions and its claim of the next number, another publisher writes
    its model.onnx (b"theirs") at that number, once per publish from now on."""
    real_next = registry._next_version_number

    def raced(name: str) -> int:
        number = real_next(name)
        s3.put_object(Bucket=TEST_BUCKET, Key=f"models/{name}/versions/{number}/model.onnx", Body=b"theirs")
        return number

    registry._next_version_number = raced  # type: ignore[method-assign]
