"""KServe's own Python SDK against the local stack: V1 and V2 as KServe's clients speak them.

Given seed-mlp and a text normalizer published into the stack's store, kserve.InferenceRESTClient must see
a live server and ready models in both protocols, and its V1 predict and explain and its V2 infer (JSON
and binary tensors, both ways) must give exactly what onnxruntime computes on the same ONNX bytes. The
SDK is asynchronous (httpx): each test runs its own client on its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from kserve import InferenceRESTClient, RESTConfig  # type: ignore[import-untyped]
from kserve.protocol.infer_type import (  # type: ignore[import-untyped]
    InferInput,
    InferRequest,
    RequestedOutput,
)

from maas.local import LocalStack
from maas.training import TrainedModel, publish_trained
from tests.support.models import text_normalizer_model

SEED = "seed-mlp"
TEXT = "text-normalizer"
TOLERANCE = 1e-6
REQUEST_ID = "kserve-sdk-1"
# The SDK decodes binary outputs into plain tensors; the response headers still tell how they came.
BINARY_HEADER = "inference-header-content-length"
T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    stack: LocalStack
    seed: TrainedModel
    reference: ort.InferenceSession

    def expected_seed_output(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        (output,) = self.reference.run(["output"], {"input": rows})
        result: npt.NDArray[np.float32] = output
        return result

    def call(self, protocol: str, operation: Callable[[Any, str], Awaitable[T]]) -> T:
        """One SDK call, as a user would make it: a client configured for `protocol`, then closed."""

        async def session() -> T:
            async with InferenceRESTClient(RESTConfig(protocol=protocol, timeout=30)) as client:
                return await operation(client, self.stack.url)

        return asyncio.run(session())


@pytest.fixture(scope="module")
def served(isolated_module_env: pytest.MonkeyPatch, seed_model: TrainedModel) -> Iterator[Served]:
    with LocalStack(port=0, embedded=True) as stack:
        registry = stack.registry
        seed = publish_trained(seed_model, registry)
        files, draft = text_normalizer_model()
        registry.publish(TEXT, files, draft)
        onnx_bytes = registry.read_artifact(seed, seed.artifact(seed.model_file))
        reference = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        yield Served(stack, seed_model, reference)


@pytest.fixture
def rows(served: Served) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(served.seed.test_inputs["input"][:4], dtype=np.float32)


def seed_request(
    rows: npt.NDArray[np.float32],
    *,
    binary_input: bool,
    binary_output: bool | None = None,
    model_name: str = SEED,
) -> InferRequest:
    tensor = InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary_input)
    outputs = None
    if binary_output is not None:
        outputs = [RequestedOutput("output", parameters={"binary_data": binary_output})]
    return InferRequest(
        model_name=model_name, infer_inputs=[tensor], request_outputs=outputs, request_id=REQUEST_ID
    )


# ---- V1: liveness at the root, model readiness, predict, explain


def test_v1_the_server_is_live(served: Served) -> None:
    assert served.call("v1", lambda client, url: client.is_server_live(url)) is True


def test_v1_seed_mlp_is_ready(served: Served) -> None:
    assert served.call("v1", lambda client, url: client.is_model_ready(url, SEED)) is True


def test_v1_a_model_that_does_not_exist_is_a_404(served: Served) -> None:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        served.call("v1", lambda client, url: client.is_model_ready(url, "no-such-model"))

    assert raised.value.response.status_code == 404
    assert "no-such-model" in str(raised.value)


def test_v1_predict_gives_what_onnxruntime_computes(served: Served, rows: npt.NDArray[np.float32]) -> None:
    answer = served.call(
        "v1", lambda client, url: client.infer(url, {"instances": rows.tolist()}, model_name=SEED)
    )

    assert set(answer) == {"predictions"}
    np.testing.assert_allclose(
        np.asarray(answer["predictions"], dtype=np.float32),
        served.expected_seed_output(rows),
        rtol=0,
        atol=TOLERANCE,
    )


def test_v1_explain_gives_the_v2_explanation(served: Served, rows: npt.NDArray[np.float32]) -> None:
    parameters = {"method": "ablation", "target": 5}
    answer = served.call(
        "v1",
        lambda client, url: client.explain(url, SEED, {"instances": rows.tolist(), "parameters": parameters}),
    )
    item = {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
    v2 = _post_json(served, f"/v2/models/{SEED}/explain", {"inputs": [item], "parameters": parameters})
    by_name = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in v2["outputs"]}

    assert sorted(answer) == ["explanations", "parameters", "predictions"]
    np.testing.assert_allclose(
        answer["predictions"], served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )
    np.testing.assert_allclose(answer["explanations"], by_name["input_attribution"], atol=TOLERANCE)


def _post_json(served: Served, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        served.stack.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


# ---- V2: liveness, readiness, infer with JSON and binary tensors


def test_v2_the_server_is_live_and_ready(served: Served) -> None:
    assert served.call("v2", lambda client, url: client.is_server_live(url)) is True
    assert served.call("v2", lambda client, url: client.is_server_ready(url)) is True


def test_v2_seed_mlp_is_ready_and_a_missing_model_is_not(served: Served) -> None:
    assert served.call("v2", lambda client, url: client.is_model_ready(url, SEED)) is True
    assert served.call("v2", lambda client, url: client.is_model_ready(url, "no-such-model")) is False


@pytest.mark.parametrize(
    ("binary_input", "binary_output"),
    [(False, None), (False, False), (True, None), (True, True), (True, False), (False, True)],
    ids=["json", "json-json", "binary", "binary-binary", "binary-json", "json-binary"],
)
def test_v2_infer_gives_what_onnxruntime_computes(
    served: Served, rows: npt.NDArray[np.float32], binary_input: bool, binary_output: bool | None
) -> None:
    # The SDK sends model_name (and an id) in the body beside the inputs.
    request = seed_request(rows, binary_input=binary_input, binary_output=binary_output)

    headers: dict[str, str] = {}

    result = served.call(
        "v2", lambda client, url: client.infer(url, request, model_name=SEED, response_headers=headers)
    )

    assert result.model_name == SEED
    assert result.id == REQUEST_ID
    (output,) = result.outputs
    assert (output.name, output.datatype, output.shape) == ("output", "FP32", [4, 10])
    # Binary output only when asked for: the SDK sends no binary_data_output of its own.
    assert (BINARY_HEADER in headers) is bool(binary_output)
    np.testing.assert_allclose(output.as_numpy(), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE)


def test_v2_infer_through_an_alias_accepts_the_bare_model_name(
    served: Served, rows: npt.NDArray[np.float32]
) -> None:
    request = seed_request(rows, binary_input=True)

    result = served.call("v2", lambda client, url: client.infer(url, request, model_name=f"{SEED}@latest"))

    np.testing.assert_allclose(
        result.outputs[0].as_numpy(), served.expected_seed_output(rows), rtol=0, atol=TOLERANCE
    )


def test_v2_a_body_naming_another_model_than_the_path_is_a_400(
    served: Served, rows: npt.NDArray[np.float32]
) -> None:
    request = seed_request(rows, binary_input=False, model_name=TEXT)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        served.call("v2", lambda client, url: client.infer(url, request, model_name=SEED))

    assert raised.value.response.status_code == 400
    assert f"model_name: expected '{SEED}'" in str(raised.value)
    assert f"got '{TEXT}'" in str(raised.value)


TEXTS = ["Hello World", "ÄÖÜ Straße", "", "KServe speaks V2"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_bytes_tensors_come_back_lower_cased(served: Served, binary: bool) -> None:
    text = InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array(TEXTS, dtype=np.object_), binary_data=binary)
    request = InferRequest(
        model_name=TEXT,
        infer_inputs=[text],
        request_outputs=[
            RequestedOutput("lowered", parameters={"binary_data": binary}),
            RequestedOutput("count", parameters={"binary_data": binary}),
        ],
    )

    headers: dict[str, str] = {}

    result = served.call(
        "v2", lambda client, url: client.infer(url, request, model_name=TEXT, response_headers=headers)
    )

    by_name = {output.name: output for output in result.outputs}
    lowered = [v.decode() if isinstance(v, bytes) else v for v in by_name["lowered"].as_numpy().ravel()]
    assert lowered == [t.lower() for t in TEXTS]
    assert (BINARY_HEADER in headers) is binary
    np.testing.assert_array_equal(by_name["count"].as_numpy(), np.array([len(TEXTS)], dtype=np.int64))
