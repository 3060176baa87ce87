"""Tiny real ONNX graphs built with `onnx.helper`, ready for `ModelRegistry.publish(name, files, draft)`.

They exercise the wire protocol rather than any learning: every V2 datatype echoed back unchanged, and
strings through onnxruntime's StringNormalizer. Each builder reads the manifest's signature from the graph
itself through onnxruntime, exactly as the runtime will check it on load.
"""

from __future__ import annotations

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from maas.datatypes import DATATYPES, Datatype
from maas.registry import ManifestDraft
from maas.registry.manifest import MODEL_FILE
from maas.runtime import signature_of

# Opset 17 pairs with IR version 8, which every onnxruntime since 1.13 loads.
OPSET = 17
IR_VERSION = 8
BATCH = "batch"
ECHO_WIDTH = 3
TEXT_LOCALE = "C.UTF-8"

ModelFiles = dict[str, bytes]


def echo_input_name(datatype: str) -> str:
    return f"x_{datatype.lower()}"


def echo_output_name(datatype: str) -> str:
    return f"y_{datatype.lower()}"


def dtype_echo_model() -> tuple[ModelFiles, ManifestDraft]:
    """For every V2 datatype, `x_<type>` [-1, 3] -> Identity -> `y_<type>` [-1, 3].

    onnxruntime's CPU Identity kernel covers all thirteen V2 datatypes (checked with ORT 1.32), so none
    is left out.
    """
    nodes, inputs, outputs = [], [], []
    for datatype in DATATYPES:
        element_type = _onnx_element_type(datatype)
        source, target = echo_input_name(datatype.v2), echo_output_name(datatype.v2)
        inputs.append(helper.make_tensor_value_info(source, element_type, [BATCH, ECHO_WIDTH]))
        outputs.append(helper.make_tensor_value_info(target, element_type, [BATCH, ECHO_WIDTH]))
        nodes.append(helper.make_node("Identity", [source], [target], name=f"echo_{datatype.v2.lower()}"))
    graph = helper.make_graph(nodes, "dtype_echo", inputs, outputs)
    return _packaged(graph, task="echo", description="Echoes one [-1, 3] tensor of every V2 datatype.")


def text_normalizer_model() -> tuple[ModelFiles, ManifestDraft]:
    """BYTES `text` [-1] -> StringNormalizer(LOWER) -> BYTES `lowered` [-1]; also INT64 `count` [1] (Shape).

    StringNormalizer's default locale is en_US.UTF-8, which slim images (this one, Lambda's) often lack and
    onnxruntime then refuses the session; C.UTF-8 is built into glibc and still lower-cases non-ASCII.
    """
    graph = helper.make_graph(
        [
            helper.make_node(
                "StringNormalizer",
                ["text"],
                ["lowered"],
                name="lower",
                case_change_action="LOWER",
                is_case_sensitive=1,
                locale=TEXT_LOCALE,
            ),
            helper.make_node("Shape", ["text"], ["count"], name="count"),
        ],
        "text_normalizer",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [BATCH])],
        [
            helper.make_tensor_value_info("lowered", TensorProto.STRING, [BATCH]),
            helper.make_tensor_value_info("count", TensorProto.INT64, [1]),
        ],
    )
    return _packaged(graph, task="text-normalization", description="Lower-cases each string.")


def _onnx_element_type(datatype: Datatype) -> int:
    if datatype.v2 == "BYTES":
        return int(TensorProto.STRING)
    return int(helper.np_dtype_to_tensor_dtype(datatype.numpy))


def _packaged(graph: onnx.GraphProto, *, task: str, description: str) -> tuple[ModelFiles, ManifestDraft]:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="maas-tests",
    )
    onnx.checker.check_model(model, full_check=True)
    content: bytes = model.SerializeToString()
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    draft = ManifestDraft(
        task=task, description=description, model_file=MODEL_FILE, signature=signature_of(session)
    )
    return {MODEL_FILE: content}, draft
