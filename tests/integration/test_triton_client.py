"""Triton's own HTTP client against the local stack: the protocol as real clients speak it.

Given seed-mlp, a text normalizer and an every-datatype echo model published into the stack's store,
tritonclient.http must see a live, ready V2 server with the binary tensor extension, and every way it can
send and receive tensors (JSON, binary, mixed, compressed) must give exactly what onnxruntime computes
on the same ONNX bytes.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import tritonclient.http as triton  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from maas.datatypes import DATATYPES
from maas.local import LocalStack
from maas.registry import Manifest
from maas.training import TrainedModel, publish_trained
from tests.support.models import (
    ECHO_WIDTH,
    dtype_echo_model,
    echo_input_name,
    echo_output_name,
    text_normalizer_model,
)

SEED = "seed-mlp"
ECHO = "dtype-echo"
TEXT = "text-normalizer"
TOLERANCE = 1e-6
MODEL_VERSION_HEADER = "x-maas-model-version"


@dataclass(frozen=True)
class Served:
    """The running stack, a client on it, and what each published model is."""

    stack: LocalStack
    client: Any
    seed: TrainedModel
    manifests: dict[str, Manifest]
    reference: ort.InferenceSession

    def expected_seed_output(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        (output,) = self.reference.run(["output"], {"input": rows})
        result: npt.NDArray[np.float32] = output
        return result


@pytest.fixture(scope="module")
def served(isolated_module_env: pytest.MonkeyPatch, seed_model: TrainedModel) -> Iterator[Served]:
    with LocalStack(port=0, embedded=True) as stack:
        registry = stack.registry
        manifests = {SEED: publish_trained(seed_model, registry)}
        for name, (files, draft) in ((ECHO, dtype_echo_model()), (TEXT, text_normalizer_model())):
            manifests[name] = registry.publish(name, files, draft)
        seed = manifests[SEED]
        onnx_bytes = registry.read_artifact(seed, seed.artifact(seed.model_file))
        reference = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        client = triton.InferenceServerClient(url=urlsplit(stack.url).netloc)
        try:
            yield Served(stack, client, seed_model, manifests, reference)
        finally:
            client.close()


@pytest.fixture
def rows(served: Served) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(served.seed.test_inputs["input"][:4], dtype=np.float32)


def seed_input(rows: npt.NDArray[np.float32], *, binary: bool) -> Any:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def output_is_binary(result: Any, name: str) -> bool:
    output = result.get_output(name)
    return "binary_data_size" in (output.get("parameters") or {})


# ---- server and model metadata


def test_the_server_is_live_and_ready(served: Served) -> None:
    assert served.client.is_server_live()
    assert served.client.is_server_ready()


def test_server_metadata_announces_the_binary_tensor_extension(served: Served) -> None:
    metadata = served.client.get_server_metadata()

    assert metadata["name"] == "maas"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("version", ["", "1"])
def test_model_metadata_describes_seed_mlp(served: Served, version: str) -> None:
    metadata = served.client.get_model_metadata(SEED, model_version=version)

    assert metadata == {
        "name": SEED,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
    }


def test_model_metadata_of_the_echo_model_lists_every_datatype(served: Served) -> None:
    metadata = served.client.get_model_metadata(ECHO)

    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        (echo_input_name(d.v2), d.v2, [-1, ECHO_WIDTH]) for d in DATATYPES
    ]


@pytest.mark.parametrize("version", ["", "1"])
def test_seed_mlp_is_ready(served: Served, version: str) -> None:
    assert served.client.is_model_ready(SEED, model_version=version)


def test_a_model_that_does_not_exist_is_not_ready(served: Served) -> None:
    assert not served.client.is_model_ready("no-such-model")


def test_the_repository_index_lists_every_published_model(served: Served) -> None:
    index = served.client.get_model_repository_index()

    assert isinstance(index, list)
    assert {(row["name"], row["version"]) for row in index} == {(SEED, "1"), (ECHO, "1"), (TEXT, "1")}
    assert all(row["state"] in ("READY", "UNAVAILABLE") for row in index)


# ---- seed-mlp: three transports, one answer


def test_json_tensors_give_what_onnxruntime_computes(served: Served, rows: npt.NDArray[np.float32]) -> None:
    result = served.client.infer(
        SEED,
        [seed_input(rows, binary=False)],
        outputs=[triton.InferRequestedOutput("output", binary_data=False)],
    )

    assert not output_is_binary(result, "output")
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


def test_default_binary_tensors_give_what_onnxruntime_computes(
    served: Served, rows: npt.NDArray[np.float32]
) -> None:
    # No requested outputs: the client sets parameters.binary_data_output, so the answer is binary too.
    result = served.client.infer(SEED, [seed_input(rows, binary=True)])

    assert output_is_binary(result, "output")
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


def test_binary_input_with_json_output_gives_what_onnxruntime_computes(
    served: Served, rows: npt.NDArray[np.float32]
) -> None:
    result = served.client.infer(
        SEED,
        [seed_input(rows, binary=True)],
        outputs=[triton.InferRequestedOutput("output", binary_data=False)],
    )

    assert not output_is_binary(result, "output")
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


def test_json_input_with_binary_output_gives_what_onnxruntime_computes(
    served: Served, rows: npt.NDArray[np.float32]
) -> None:
    result = served.client.infer(
        SEED,
        [seed_input(rows, binary=False)],
        outputs=[triton.InferRequestedOutput("output", binary_data=True)],
    )

    assert output_is_binary(result, "output")
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_compressed_request_gives_the_same_answer(
    served: Served, rows: npt.NDArray[np.float32], algorithm: str, binary: bool
) -> None:
    result = served.client.infer(
        SEED, [seed_input(rows, binary=binary)], request_compression_algorithm=algorithm
    )

    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


def test_a_pinned_version_is_served_and_reported(served: Served, rows: npt.NDArray[np.float32]) -> None:
    result = served.client.infer(SEED, [seed_input(rows, binary=True)], model_version="1")

    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(
        result.as_numpy("output"), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


def test_a_pinned_version_that_does_not_exist_is_a_client_error(
    served: Served, rows: npt.NDArray[np.float32]
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        served.client.infer(SEED, [seed_input(rows, binary=True)], model_version="9")

    assert "version 9" in raised.value.message()
    assert raised.value.status() == "404"


@pytest.mark.parametrize("path", [f"/v2/models/{SEED}/infer", f"/v2/models/{SEED}/versions/1/infer"])
def test_every_answer_names_the_model_version_in_a_header(
    served: Served, rows: npt.NDArray[np.float32], path: str
) -> None:
    item = {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
    body = json.dumps({"inputs": [item]}).encode()
    request = urllib.request.Request(
        served.stack.url + path, data=body, method="POST", headers={"Content-Type": "application/json"}
    )

    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers[MODEL_VERSION_HEADER] == "1"


# ---- BYTES through a real string graph


TEXTS = ["Hello World", "ÄÖÜ Straße", "", "MAAS speaks V2"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_tensors_come_back_lower_cased(served: Served, binary: bool) -> None:
    text = triton.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array(TEXTS, dtype=np.object_), binary_data=binary)

    result = served.client.infer(
        TEXT,
        [text],
        outputs=[
            triton.InferRequestedOutput("lowered", binary_data=binary),
            triton.InferRequestedOutput("count", binary_data=binary),
        ],
    )

    lowered = [item.decode() if isinstance(item, bytes) else item for item in result.as_numpy("lowered")]
    assert lowered == [t.lower() for t in TEXTS]
    assert output_is_binary(result, "lowered") is binary
    np.testing.assert_array_equal(result.as_numpy("count"), np.array([len(TEXTS)], dtype=np.int64))


# ---- every datatype, both transports, bit for bit


def _bytes_values() -> npt.NDArray[Any]:
    return np.array([["a", "", "ÄÖÜ"], ["tab\tand\nnewline", "😀", "x" * 300]], dtype=np.object_)


ECHO_VALUES: dict[str, Callable[[], npt.NDArray[Any]]] = {
    "BOOL": lambda: np.array([[True, False, True], [False, False, True]]),
    "UINT8": lambda: np.array([[0, 1, 127], [128, 254, 255]], dtype=np.uint8),
    "UINT16": lambda: np.array([[0, 1, 255], [256, 32768, 65535]], dtype=np.uint16),
    "UINT32": lambda: np.array([[0, 1, 2**16], [2**31 - 1, 2**31, 2**32 - 1]], dtype=np.uint32),
    "UINT64": lambda: np.array([[0, 1, 2**63 - 1], [2**63, 2**63 + 1, 2**64 - 1]], dtype=np.uint64),
    "INT8": lambda: np.array([[-128, -1, 0], [1, 64, 127]], dtype=np.int8),
    "INT16": lambda: np.array([[-32768, -1, 0], [1, 300, 32767]], dtype=np.int16),
    "INT32": lambda: np.array([[-(2**31), -1, 0], [1, 2**24 + 1, 2**31 - 1]], dtype=np.int32),
    "INT64": lambda: np.array([[-(2**63), -(2**53) - 1, -1], [0, 2**53 + 1, 2**63 - 1]], dtype=np.int64),
    "FP16": lambda: np.array([[-1.5, 0.333, -0.0], [65504.0, 6e-08, -0.1]], dtype=np.float16),
    "FP32": lambda: np.array([[-1.5, 0.1, -0.0], [3.4028235e38, 1e-45, -2.718281828]], dtype=np.float32),
    "FP64": lambda: np.array(
        [[-1.5, 1 / 3, -0.0], [1.7976931348623157e308, 5e-324, -2.718281828459045]], dtype=np.float64
    ),
    "BYTES": _bytes_values,
}


def test_the_echo_table_covers_every_datatype() -> None:
    assert list(ECHO_VALUES) == [d.v2 for d in DATATYPES]


def _echo_inputs(tested: str, *, binary: bool) -> list[Any]:
    """The tested datatype carries its edge values; every other input is zeros (the graph needs all)."""
    inputs = []
    for datatype in DATATYPES:
        values = (
            ECHO_VALUES[datatype.v2]()
            if datatype.v2 == tested
            else np.zeros((1, ECHO_WIDTH), dtype=datatype.numpy)
        )
        if datatype.v2 == "BYTES" and datatype.v2 != tested:
            values = np.full((1, ECHO_WIDTH), "", dtype=np.object_)
        tensor = triton.InferInput(echo_input_name(datatype.v2), list(values.shape), datatype.v2)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(ECHO_VALUES))
def test_every_datatype_round_trips_exactly(served: Served, datatype: str, binary: bool) -> None:
    sent = ECHO_VALUES[datatype]()
    output = echo_output_name(datatype)

    result = served.client.infer(
        ECHO,
        _echo_inputs(datatype, binary=binary),
        outputs=[triton.InferRequestedOutput(output, binary_data=binary)],
    )

    (described,) = result.get_response()["outputs"]
    assert (described["name"], described["datatype"], described["shape"]) == (output, datatype, [2, 3])
    received = result.as_numpy(output)
    if datatype == "BYTES":
        as_text = [item.decode() if isinstance(item, bytes) else item for item in received.ravel()]
        assert as_text == sent.ravel().tolist()
    else:
        assert received.dtype == sent.dtype
        # Bytes, not values: -0.0, subnormals and the last bit of every float must survive.
        assert received.tobytes() == sent.tobytes()
