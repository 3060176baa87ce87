"""Explanations through the real infer and async handlers: V2 /explain, KServe V1 :explain, direct invokes
and SQS, with every bad parameter answered by a 400 that names it.

The values here are checked against computations made apart from maas (the torch module, or a text model
whose answer is known in closed form); tests/functional/explain compares them with Captum.
"""

from __future__ import annotations

import base64
import copy
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest
from onnx import TensorProto

from maas.registry import Manifest, ModelRegistry
from tests.security.rows import Rows
from tests.support.aws import TEST_BUCKET
from tests.support.events import http_event as support_http_event
from tests.support.events import json_event, load_event
from tests.support.functions import load_function_module, set_function_env
from tests.support.models import TOKENIZER_FILE, WORDPIECE_VOCAB, bag_of_words_model, batch_sum_model

if TYPE_CHECKING:
    from maas.training import TrainedModel

EXPLAIN_PATH = "/v2/models/seed-mlp/explain"
ROWS = np.random.default_rng(11).normal(size=(3, 10)).astype(np.float32)


def http_event(path: str, document: Any, method: str = "POST") -> dict[str, Any]:
    return json_event(method, path, document)


def invoke(function: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = function.lambda_handler(event, None)
    return response["statusCode"], json.loads(response["body"])


def v2_request(rows: npt.NDArray[np.float32] = ROWS, **parameters: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ],
        "parameters": parameters,
    }


def tensors(answer: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


# ---- seed-mlp: predictions and attributions


def test_v2_explain_answers_the_predictions_and_each_feature_s_ablation_effect(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    status, answer = invoke(infer_function, http_event(EXPLAIN_PATH, v2_request(method="ablation", target=2)))

    assert status == 200, answer
    got = tensors(answer)
    assert list(got) == ["output", "input_attribution"]
    np.testing.assert_allclose(got["output"], seed_model.predict(ROWS), atol=1e-5)
    # Feature i's attribution is what the torch model loses on output 2 when x_i becomes 0.
    expected = np.empty_like(ROWS)
    full = seed_model.predict(ROWS)[:, 2]
    for feature in range(10):
        ablated = ROWS.copy()
        ablated[:, feature] = 0
        expected[:, feature] = full - seed_model.predict(ablated)[:, 2]
    np.testing.assert_allclose(got["input_attribution"], expected, atol=1e-5)
    settings = answer["parameters"]["explanation"]
    assert settings["method"] == "ablation" and settings["target"] == [2, 2, 2]
    assert settings["evaluations"] == 3 * 11 and settings["model_runs"] == 1
    assert settings["attributions"] == ["input_attribution"]


def test_exact_shapley_over_feature_groups_adds_up_to_the_change_from_the_baseline(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    mask = [0, 0, 1, 1, 2, 2, 3, 3, 4, 5]
    baseline = [0.5] * 10
    document = v2_request(
        method="shapley", exact=True, feature_mask=mask, baseline=baseline, target=[1, 4, 7]
    )
    status, answer = invoke(infer_function, http_event("/v2/models/seed-mlp/versions/1/explain", document))

    assert status == 200, answer
    attribution = tensors(answer)["input_attribution"]
    first_of_group = [mask.index(group) for group in range(6)]
    targets = np.array([1, 4, 7])
    rows = np.arange(3)
    change = (
        seed_model.predict(ROWS)[rows, targets] - seed_model.predict(np.full_like(ROWS, 0.5))[rows, targets]
    )
    # Efficiency: Shapley values share out exactly the difference between the input and the baseline.
    np.testing.assert_allclose(attribution[:, first_of_group].sum(axis=1), change, atol=1e-4)
    assert answer["parameters"]["explanation"]["permutations"] == 720
    # 720 permutations walk only the 2**6 distinct coalitions.
    assert answer["parameters"]["explanation"]["evaluations"] == 3 * 64


def test_the_server_lists_explain_among_its_extensions(infer_function: ModuleType) -> None:
    status, metadata = invoke(infer_function, support_http_event("GET", "/v2"))
    assert status == 200 and "explain" in metadata["extensions"]


def test_binary_output_is_honoured_for_attributions(infer_function: ModuleType) -> None:
    document = v2_request(method="occlusion", window=2, stride=2, target=0, binary_data_output=True)
    response = infer_function.lambda_handler(http_event(EXPLAIN_PATH, document), None)

    assert response["statusCode"] == 200
    headers = {name.lower(): value for name, value in response["headers"].items()}
    header_length = int(headers["inference-header-content-length"])
    raw = base64.b64decode(response["body"])
    header = json.loads(raw[:header_length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert [o["name"] for o in header["outputs"]] == ["output", "input_attribution"]
    assert sum(sizes) == len(raw) - header_length == 2 * ROWS.size * 4


def test_every_bad_parameter_is_a_400_that_names_it(infer_function: ModuleType) -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"method": "lime", "target": 0}, ["parameters.method", "'ablation', 'occlusion' or 'shapley'"]),
        ({"target": 10}, ["parameters.target", "expected an output index in [0, 9]", "got 10"]),
        ({"target": -1}, ["parameters.target", "got -1"]),
        ({"target": "seven"}, ["parameters.target", "unknown label"]),
        ({"target": [1, 2]}, ["parameters.target", "one target per row (3), got 2"]),
        ({}, ["parameters.target: required", "10 values per row"]),
        ({"target": 0, "feature_mask": [0, 1, 2]}, ["parameters.feature_mask", "one row [10]", "got [3]"]),
        ({"target": 0, "feature_mask": [0.5] * 10}, ["parameters.feature_mask", "integer group ids"]),
        ({"target": 0, "method": "shapley", "exact": True}, ["parameters.exact", "at most 6", "got 10"]),
        ({"target": 0, "method": "shapley", "n_samples": 0}, ["parameters.n_samples"]),
        ({"target": 0, "method": "occlusion"}, ["parameters.window: required"]),
        ({"target": 0, "method": "occlusion", "window": [11]}, ["parameters.window", "[10]"]),
        ({"target": 0, "method": "occlusion", "window": 2, "stride": 0}, ["parameters.stride"]),
        ({"target": 0, "window": 2}, ["parameters.window: used by occlusion only"]),
        ({"target": 0, "baseline": [1.0, 2.0, 3.0]}, ["parameters.baseline", "[10]", "got shape [3]"]),
        ({"target": 0, "baseline": "pad"}, ["parameters.baseline", "'zeros', 'mean'"]),
        ({"target": 0, "output": "logits"}, ["parameters.output", "['output']"]),
        ({"target": 0, "methd": "shapley"}, ["parameters.methd: unknown field"]),
        ({"target": 0, "method": "shapley", "n_samples": 20_000}, ["parameters.n_samples", "10000"]),
        ({"target": 0, "method": "occlusion", "window": 2, "stride": 3}, ["parameters.stride", "window [2]"]),
        ({"target": 0, "baseline": [None] * 10}, ["parameters.baseline", "finite numbers"]),
        (
            {"target": 0, "baseline": {"input": 0, "other": 1}},
            ["parameters.baseline", "unknown input(s) ['other']"],
        ),
        ({"target": 0, "feature_mask": []}, ["parameters.feature_mask", "one row [10]", "got [0]"]),
    ]
    rows = Rows()
    for parameters, expected in cases:
        with rows.case(parameters):
            status, answer = invoke(infer_function, http_event(EXPLAIN_PATH, v2_request(**parameters)))
            assert status == 400, answer
            for part in expected:
                assert part in answer["error"], answer["error"]
    rows.assert_all_passed()


def test_named_baselines_per_input_and_occlusion_windows_cropped_at_the_edge_as_in_captum(
    infer_function: ModuleType, seed_model: TrainedModel
) -> None:
    from captum.attr import Occlusion

    document = v2_request(method="occlusion", window=3, stride=2, target=4, baseline={"input": "zeros"})
    status, answer = invoke(infer_function, http_event(EXPLAIN_PATH, document))

    assert status == 200, answer
    # 10 features, window 3, stride 2: Captum places 5 windows, the last one cropped to features 8-9.
    assert answer["parameters"]["explanation"]["windows"] == 5
    torch = pytest.importorskip("torch")
    expected = Occlusion(seed_model.module).attribute(
        torch.from_numpy(ROWS), sliding_window_shapes=(3,), strides=(2,), target=4, baselines=0.0
    )
    np.testing.assert_allclose(tensors(answer)["input_attribution"], expected.detach().numpy(), atol=1e-5)


def test_an_empty_batch_and_an_output_without_a_row_per_input_are_400s(
    infer_function: ModuleType, registry: ModelRegistry
) -> None:
    status, answer = invoke(
        infer_function, http_event(EXPLAIN_PATH, v2_request(np.zeros((0, 10), np.float32)))
    )
    assert status == 400 and "expected at least one row and no empty dimension" in answer["error"]

    files, draft = batch_sum_model()
    registry.publish("batch-sum", files, draft)
    status, answer = invoke(
        infer_function, http_event("/v2/models/batch-sum/explain", v2_request(ROWS[:1], target=0))
    )
    assert status == 400, answer
    assert "parameters.output: 'total' answered [1, 1] for 11 rows" in answer["error"]


def test_the_evaluation_bound_is_a_setting_and_the_refusal_says_by_how_much(
    monkeypatch: pytest.MonkeyPatch, infer_function: ModuleType
) -> None:
    monkeypatch.setenv("MAAS_EXPLAIN_MAX_EVALS", "30")
    function = load_function_module("infer")

    status, answer = invoke(function, http_event(EXPLAIN_PATH, v2_request(target=0)))

    assert status == 400
    assert "needs 33 model evaluations (3 rows x (10 feature groups + 1 unperturbed))" in answer["error"]
    assert "at most 30 (MAAS_EXPLAIN_MAX_EVALS), 3 over" in answer["error"]


def test_small_explain_batches_take_more_runs_for_the_same_answer(
    monkeypatch: pytest.MonkeyPatch, infer_function: ModuleType
) -> None:
    document = v2_request(method="shapley", n_samples=40, target=3)
    _, whole = invoke(infer_function, http_event(EXPLAIN_PATH, document))
    monkeypatch.setenv("MAAS_EXPLAIN_BATCH_ROWS", "7")
    status, chunked = invoke(load_function_module("infer"), http_event(EXPLAIN_PATH, document))

    assert status == 200
    evaluations = whole["parameters"]["explanation"]["evaluations"]
    assert whole["parameters"]["explanation"]["model_runs"] == 1
    assert chunked["parameters"]["explanation"]["model_runs"] == -(-evaluations // 7)
    np.testing.assert_allclose(
        tensors(chunked)["input_attribution"], tensors(whole)["input_attribution"], atol=1e-6
    )


# ---- KServe V1


def test_v1_explain_answers_predictions_and_one_explanation_per_instance(infer_function: ModuleType) -> None:
    body = {"instances": ROWS.tolist(), "parameters": {"method": "ablation", "target": 5}}
    status, answer = invoke(infer_function, http_event("/v1/models/seed-mlp:explain", body))
    _, v2 = invoke(infer_function, http_event(EXPLAIN_PATH, v2_request(method="ablation", target=5)))

    assert status == 200, answer
    assert sorted(answer) == ["explanations", "parameters", "predictions"]
    np.testing.assert_allclose(answer["predictions"], tensors(v2)["output"], atol=1e-6)
    np.testing.assert_allclose(answer["explanations"], tensors(v2)["input_attribution"], atol=1e-6)
    assert answer["parameters"]["target"] == [5, 5, 5]


def test_v1_explain_refuses_bad_parameters_and_other_methods(infer_function: ModuleType) -> None:
    body = {"instances": ROWS.tolist(), "parameters": {"method": "shapley", "target": 99}}
    status, answer = invoke(infer_function, http_event("/v1/models/seed-mlp:explain", body))
    assert status == 400 and "parameters.target" in answer["error"]

    status, answer = invoke(infer_function, http_event("/v1/models/seed-mlp:explain", None, method="GET"))
    assert status == 405


# ---- events


def test_a_direct_invoke_and_an_async_request_can_ask_for_an_explanation(
    infer_function: ModuleType, async_function: ModuleType, s3: Any
) -> None:
    event = load_event("direct_invoke_infer.json") | {
        "operation": "explain",
        "parameters": {"method": "occlusion", "window": 3, "target": 0},
    }
    direct = infer_function.lambda_handler(event, None)
    assert [o["name"] for o in direct["outputs"]] == ["output", "input_attribution"], direct
    assert direct["parameters"]["explanation"]["windows"] == 8

    record = copy.deepcopy(load_event("sqs_async_request.json")["Records"][0])
    record["body"] = json.dumps(
        {"model": "seed-mlp", "id": "why-1", "operation": "explain", **v2_request(target=1)}
    )
    bad = copy.deepcopy(record)
    bad["messageId"] = "m-2"
    bad["body"] = json.dumps({"model": "seed-mlp", "id": "why-2", "operation": "explain", **v2_request()})
    assert async_function.lambda_handler({"Records": [record, bad]}, None) == {"batchItemFailures": []}

    answered = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key="results/why-1.json")["Body"].read())
    assert tensors(answered)["input_attribution"].shape == ROWS.shape
    refused = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key="results/why-2.json")["Body"].read())
    assert refused["status"] == 400 and "parameters.target: required" in refused["error"]


# ---- text: token ablation


TEXT_WEIGHTS = np.random.default_rng(5).normal(size=(len(WORDPIECE_VOCAB), 2)).astype(np.float32)


@pytest.fixture
def text_function(monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry) -> tuple[ModuleType, Manifest]:
    files, draft = bag_of_words_model(TEXT_WEIGHTS)
    manifest = registry.publish("bag-of-words", files, draft)
    set_function_env(monkeypatch)
    del files[TOKENIZER_FILE]
    return load_function_module("infer"), manifest


def test_text_is_explained_token_by_token_with_the_tokens_and_their_scores(
    text_function: tuple[ModuleType, Manifest],
) -> None:
    function, _ = text_function
    texts = ["the cat sat on the mat", "hello world!", ""]
    document = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": texts}],
        "parameters": {"target": "positive"},
    }
    status, answer = invoke(function, http_event("/v2/models/bag-of-words/explain", document))

    assert status == 200, answer
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert list(outputs) == ["logits", "text_tokens", "text_attribution"]
    tokens = np.asarray(outputs["text_tokens"]["data"], dtype=object).reshape(outputs["text_tokens"]["shape"])
    scores = np.asarray(outputs["text_attribution"]["data"]).reshape(outputs["text_attribution"]["shape"])
    vocab = {token: index for index, token in enumerate(WORDPIECE_VOCAB)}
    mask_weight = TEXT_WEIGHTS[vocab["[MASK]"], 1]
    for row, words in enumerate([texts[0].split(), ["hello", "world", "!"], []]):
        assert list(tokens[row][: len(words)]) == words and all(t == "" for t in tokens[row][len(words) :])
        # The graph sums token weights, so masking a token loses its weight and gains [MASK]'s.
        expected = [TEXT_WEIGHTS[vocab[word], 1] - mask_weight for word in words]
        np.testing.assert_allclose(scores[row][: len(words)], expected, atol=1e-5)
    settings = answer["parameters"]["explanation"]
    assert settings["target"] == [1, 1, 1] and settings["baseline"] == "mask" and settings["unit"] == "token"
    assert settings["evaluations"] == (6 + 1) + (3 + 1) + 1

    body = {"instances": texts[:2], "parameters": {"target": 0, "baseline": "pad"}}
    status, v1 = invoke(function, http_event("/v1/models/bag-of-words:explain", body))
    assert status == 200, v1
    assert v1["explanations"][1]["tokens"] == ["hello", "world", "!"]
    pad_weight = TEXT_WEIGHTS[vocab["[PAD]"], 0]
    np.testing.assert_allclose(
        v1["explanations"][1]["attributions"],
        [TEXT_WEIGHTS[vocab[w], 0] - pad_weight for w in ["hello", "world", "!"]],
        atol=1e-5,
    )


def test_a_graph_taking_int32_ids_is_explained_like_one_taking_int64(
    text_function: tuple[ModuleType, Manifest], registry: ModelRegistry
) -> None:
    function, _ = text_function
    files, draft = bag_of_words_model(TEXT_WEIGHTS, id_type=TensorProto.INT32)
    registry.publish("bag-of-words-int32", files, draft)
    document = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["the cat sat", "hello"]}],
        "parameters": {"target": 1},
    }

    answers = [
        invoke(function, http_event(f"/v2/models/{name}/explain", document))
        for name in ("bag-of-words", "bag-of-words-int32")
    ]

    assert [status for status, _ in answers] == [200, 200], answers
    assert answers[0][1]["outputs"] == answers[1][1]["outputs"]


def test_text_refuses_the_methods_and_parameters_of_tensors(
    text_function: tuple[ModuleType, Manifest],
) -> None:
    function, _ = text_function
    rows = Rows()
    for parameters, expected in [
        ({"method": "shapley"}, "parameters.method: model 'bag-of-words' takes text"),
        ({"feature_mask": [0, 1]}, "parameters.feature_mask: not used for text"),
        ({"baseline": "zeros"}, "parameters.baseline: expected 'mask' or 'pad'"),
    ]:
        with rows.case(parameters):
            document = {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["the cat"]}],
                "parameters": parameters,
            }
            status, answer = invoke(function, http_event("/v2/models/bag-of-words/explain", document))
            assert status == 400 and expected in answer["error"], answer
    rows.assert_all_passed()
