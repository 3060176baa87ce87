"""A text model through the infer function: clients send strings, the runtime tokenizes them with the
published tokenizer.json, and the graph gets the id tensors.

The model is tiny and real: a graph that returns the ids it was fed and how many were not padding, and a
WordPiece tokenizer built with `tokenizers`, published with the real registry into moto.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from onnx import TensorProto

from maas.config import Settings
from maas.errors import IntegrityError
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import Manifest, ModelRef, ModelRegistry
from maas.registry.manifest import MODEL_FILE
from maas.runtime import token_rows_per_run
from maas.service.inference import InferenceService
from tests.functional.functions.binary_text import binary_text_body
from tests.support import events as support_events
from tests.support.aws import TEST_BUCKET
from tests.support.events import http_event
from tests.support.functions import load_function_module, set_function_env, start_function
from tests.support.models import TOKEN_STATS_MAX_LENGTH, TOKENIZER_FILE, ModelFiles, token_stats_model

MODEL = "token-stats"
INFER_PATH = f"/v2/models/{MODEL}/infer"
TEXTS = ["The cat sat on the mat.", "", "Hello, Straße! ÄÖÜ"]
LONG_TEXT = "the dog sat on the mat " * 20


@pytest.fixture
def text_model(registry: ModelRegistry) -> tuple[ModelFiles, Manifest]:
    files, draft = token_stats_model()
    return files, registry.publish(MODEL, files, draft)


@pytest.fixture
def infer_function(
    monkeypatch: pytest.MonkeyPatch, s3: Any, text_model: tuple[ModelFiles, Manifest]
) -> ModuleType:
    return start_function(monkeypatch, "infer")


# ---- building requests, reading answers and the reference computation


def json_event(path: str, document: Mapping[str, Any]) -> dict[str, Any]:
    return support_events.json_event("POST", path, document)


def binary_text_event(path: str, items: Sequence[bytes]) -> dict[str, Any]:
    """Triton's binary tensor extension: the only way to send BYTES that are not UTF-8 (JSON carries text)."""
    headers, body = binary_text_body(items)
    return http_event("POST", path, body, headers=headers)


def text_request(items: Sequence[str], name: str = "text") -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(items)], "data": list(items)}]}


def invoke(function: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = function.lambda_handler(event, None)
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return response["statusCode"], json.loads(body)


def outputs_of(answer: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    return {
        output["name"]: np.asarray(output["data"], dtype=np.int64).reshape(output["shape"])
        for output in answer["outputs"]
    }


def reference(files: ModelFiles, items: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """What the model should answer, computed apart from maas: `tokenizers` and onnxruntime directly."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(files[TOKENIZER_FILE].decode())
    tokenizer.enable_truncation(max_length=TOKEN_STATS_MAX_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(list(items))
    session = ort.InferenceSession(files[MODEL_FILE], providers=["CPUExecutionProvider"])
    dtypes = {arg.name: np.int32 if arg.type == "tensor(int32)" else np.int64 for arg in session.get_inputs()}
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=dtypes["input_ids"]),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=dtypes["attention_mask"]),
    }
    token_ids, lengths = session.run(["token_ids", "lengths"], feeds)
    return {"token_ids": token_ids, "lengths": lengths}


# ---- answers


def test_given_texts_when_inferring_then_the_answer_is_the_tokenizer_and_graph_run_directly(
    infer_function: ModuleType, text_model: tuple[ModelFiles, Manifest]
) -> None:
    files, manifest = text_model
    status, answer = invoke(infer_function, json_event(INFER_PATH, text_request(TEXTS)))

    assert status == 200, answer
    assert (answer["model_name"], answer["model_version"]) == (MODEL, str(manifest.version))
    assert [(o["name"], o["datatype"]) for o in answer["outputs"]] == [
        ("token_ids", "INT64"),
        ("lengths", "INT64"),
    ]
    got, expected = outputs_of(answer), reference(files, TEXTS)
    np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])
    np.testing.assert_array_equal(got["lengths"], expected["lengths"])
    # The empty text is [CLS] [SEP], padded like the rest.
    assert got["lengths"][1] == 2


def test_a_text_longer_than_max_length_is_truncated(
    infer_function: ModuleType, text_model: tuple[ModelFiles, Manifest]
) -> None:
    status, answer = invoke(infer_function, json_event(INFER_PATH, text_request([LONG_TEXT, "a cat"])))

    assert status == 200, answer
    got = outputs_of(answer)
    assert got["token_ids"].shape == (2, TOKEN_STATS_MAX_LENGTH)
    assert got["lengths"].tolist() == [TOKEN_STATS_MAX_LENGTH, 4]
    np.testing.assert_array_equal(
        got["token_ids"], reference(text_model[0], [LONG_TEXT, "a cat"])["token_ids"]
    )


def test_a_batch_of_more_tokens_than_one_run_takes_is_answered_as_one_run_would(
    infer_function: ModuleType, text_model: tuple[ModelFiles, Manifest]
) -> None:
    # 8 tokens a text: TEXT_RUN_TOKENS // 8 texts a run, so this batch takes several runs, the last short.
    per_run = token_rows_per_run(TOKEN_STATS_MAX_LENGTH)
    items = [" ".join(["the cat"] * (index % 5)) for index in range(2 * per_run + 3)]
    assert len(items) > 2 * per_run and len(items) % per_run

    status, answer = invoke(infer_function, json_event(INFER_PATH, text_request(items)))

    assert status == 200, answer
    files, _ = text_model
    got, expected = outputs_of(answer), reference(files, items)
    np.testing.assert_array_equal(got["token_ids"], expected["token_ids"])
    np.testing.assert_array_equal(got["lengths"], expected["lengths"])


def test_utf8_text_sent_as_binary_bytes_gets_the_same_answer_as_json(
    infer_function: ModuleType, text_model: tuple[ModelFiles, Manifest]
) -> None:
    status, answer = invoke(infer_function, binary_text_event(INFER_PATH, [text.encode() for text in TEXTS]))
    assert status == 200, answer
    np.testing.assert_array_equal(
        outputs_of(answer)["token_ids"], reference(text_model[0], TEXTS)["token_ids"]
    )


def test_v1_instances_of_strings_are_tokenized_too(
    infer_function: ModuleType, text_model: tuple[ModelFiles, Manifest]
) -> None:
    status, answer = invoke(infer_function, json_event(f"/v1/models/{MODEL}:predict", {"instances": TEXTS}))
    assert status == 200, answer
    expected = reference(text_model[0], TEXTS)
    assert [row["lengths"] for row in answer["predictions"]] == expected["lengths"].tolist()


def test_metadata_shows_the_text_input_clients_send_not_the_graphs_id_tensors(
    infer_function: ModuleType,
) -> None:
    status, metadata = invoke(infer_function, http_event("GET", f"/v2/models/{MODEL}"))

    assert status == 200, metadata
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [
        {"name": "token_ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "lengths", "datatype": "INT64", "shape": [-1]},
    ]


# ---- client mistakes


def test_invalid_utf8_bytes_are_a_400_naming_the_input_and_element_not_the_value(
    infer_function: ModuleType,
) -> None:
    status, answer = invoke(infer_function, binary_text_event(INFER_PATH, [b"fine", b"secret \xff\xfe"]))

    assert status == 400
    assert set(answer) == {"error"}
    assert "'text'" in answer["error"] and "element 1" in answer["error"] and "UTF-8" in answer["error"]
    assert "secret" not in answer["error"]


def test_sending_the_graphs_id_tensors_instead_of_text_is_a_400_naming_the_text_input(
    infer_function: ModuleType,
) -> None:
    ids = {"datatype": "INT64", "shape": [1, 3], "data": [2, 5, 3]}
    document = {"inputs": [{"name": "input_ids", **ids}, {"name": "attention_mask", **ids}]}
    status, answer = invoke(infer_function, json_event(INFER_PATH, document))

    assert status == 400
    assert "['text']" in answer["error"] and "'input_ids'" in answer["error"], answer["error"]


@pytest.mark.parametrize(
    ("request_input", "expected", "got"),
    [
        pytest.param(
            {"datatype": "INT64", "shape": [1], "data": [1]}, "expected datatype BYTES", "got INT64"
        ),
        pytest.param(
            {"datatype": "BYTES", "shape": [1, 1], "data": ["a"]}, "expected shape [-1]", "got [1, 1]"
        ),
    ],
)
def test_text_of_the_wrong_datatype_or_rank_is_a_400(
    infer_function: ModuleType, request_input: dict[str, Any], expected: str, got: str
) -> None:
    status, answer = invoke(
        infer_function, json_event(INFER_PATH, {"inputs": [{"name": "text", **request_input}]})
    )
    assert status == 400
    assert "input 'text'" in answer["error"] and expected in answer["error"] and got in answer["error"]


# ---- integrity and loading


def test_a_tampered_tokenizer_fails_the_load_with_an_integrity_error_and_is_never_used(
    infer_function: ModuleType, s3: Any, registry: ModelRegistry, text_model: tuple[ModelFiles, Manifest]
) -> None:
    _, manifest = text_model
    key = registry.version_prefix(MODEL, manifest.version) + TOKENIZER_FILE
    document = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read())
    document["model"]["vocab"]["cat"], document["model"]["vocab"]["dog"] = (
        document["model"]["vocab"]["dog"],
        document["model"]["vocab"]["cat"],
    )
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=json.dumps(document).encode())

    status, answer = invoke(infer_function, json_event(INFER_PATH, text_request(["a cat"])))
    assert status == 500
    assert f"artifact '{TOKENIZER_FILE}'" in answer["error"] and "sha256" in answer["error"]
    assert infer_function.app.service.cache.loaded_keys() == []

    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))
    with pytest.raises(IntegrityError, match=f"artifact '{TOKENIZER_FILE}'"):
        service.infer(
            ModelRef(MODEL), InferenceRequest(inputs=[Tensor("text", "BYTES", np.array(["a"], dtype=object))])
        )


def test_a_graph_taking_int32_ids_is_fed_int32(registry: ModelRegistry) -> None:
    files, draft = token_stats_model(id_type=TensorProto.INT32)
    registry.publish(MODEL, files, draft)
    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))

    response = service.infer(
        ModelRef(MODEL), InferenceRequest(inputs=[Tensor("text", "BYTES", np.array(TEXTS, dtype=object))])
    )

    lengths = {tensor.name: tensor.array for tensor in response.outputs}["lengths"]
    assert lengths.tolist() == reference(files, TEXTS)["lengths"].tolist()


def test_the_loaded_model_carries_its_tokenizer_and_serves_the_text_signature(
    registry: ModelRegistry, text_model: tuple[ModelFiles, Manifest]
) -> None:
    service = InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))
    model = service.cache.get(MODEL, text_model[1].version)

    assert model.tokenizer is not None and model.tokenizer.input_name == "text"
    assert [spec.name for spec in model.signature.inputs] == ["text"]
    assert [spec.name for spec in model.manifest.signature.inputs] == ["input_ids", "attention_mask"]


def test_a_batch_job_of_texts_answers_each_line_like_the_reference(
    monkeypatch: pytest.MonkeyPatch, s3: Any, text_model: tuple[ModelFiles, Manifest]
) -> None:
    from tests.support.jobs import Context, job_event

    set_function_env(monkeypatch)
    files, _ = text_model
    texts = [*TEXTS, LONG_TEXT] * 20  # 80 lines: three runs of at most 32 texts
    jsonl = "\n".join(json.dumps(text) for text in texts) + "\n" + json.dumps({"text": "an object works too"})
    folder = f"jobs/{MODEL}/texts/"
    s3.put_object(Bucket=TEST_BUCKET, Key=folder + "input.jsonl", Body=jsonl.encode())
    csv_text = "\n".join(f'"{text}"' for text in texts[:4]) + "\n"
    s3.put_object(Bucket=TEST_BUCKET, Key=f"jobs/{MODEL}/texts-csv/input.csv", Body=csv_text.encode())
    batch = load_function_module("batch")

    batch.lambda_handler(job_event(folder + "input.jsonl"), Context())
    batch.lambda_handler(job_event(f"jobs/{MODEL}/texts-csv/input.csv"), Context())

    body = s3.get_object(Bucket=TEST_BUCKET, Key=folder + "output.jsonl")["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == len(texts) + 1
    for text, line in zip([*texts, "an object works too"], lines, strict=True):
        expected = reference(files, [text])
        assert line["outputs"]["lengths"] == expected["lengths"][0]
        # token_ids is padded to the longest text of its run, as it is for any multi-text request.
        ids = np.asarray(line["outputs"]["token_ids"])
        wanted = expected["token_ids"][0]
        np.testing.assert_array_equal(ids[: len(wanted)], wanted)
        assert not ids[len(wanted) :].any()
    csv_body = s3.get_object(Bucket=TEST_BUCKET, Key=f"jobs/{MODEL}/texts-csv/output.jsonl")["Body"].read()
    assert [json.loads(line) for line in csv_body.decode().splitlines()] == lines[:4]
