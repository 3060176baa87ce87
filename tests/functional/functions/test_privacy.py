"""Privacy: no input or output value ever reaches the logs, on any path.

Given seed-mlp and a text model published to moto, and every logger turned up to DEBUG (our Powertools
logger, and the root logger that Powertools' own modules write to), full request cycles run through the
real handlers: V2 JSON and binary, V1, text, client errors carrying the values, an unexpected server error
whose exception text quotes them, an async SQS request and a batch job. Whatever the process wrote (stdout,
stderr, log records with their extra fields, EMF metrics) must not contain a distinctive input value, nor
any output value the model computed from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import pytest

from maas.registry import ModelRegistry
from tests.functional.functions.binary_text import binary_text_body
from tests.support.events import http_event as support_http_event
from tests.support.jobs import Context, job_event, read_lines, submit
from tests.support.logs import JsonLogs
from tests.support.models import text_normalizer_model
from tests.support.queues import record, result

if TYPE_CHECKING:
    from maas.training import TrainedModel

MARKER = 31337.4242
MARKER_INT = 313374242
SECRET = "SSN-123-45-6789"
REQUEST_ID = "req-for-SSN-123-45-6789"
TEXT_MODEL = "lowercase"
SEED_INFER = "/v2/models/seed-mlp/infer"
HEADER_LENGTH = "inference-header-content-length"
ROWS = np.array([[MARKER] * 10, [-MARKER] * 10], dtype=np.float32)


class Logs:
    """Everything the process logged or printed during the test."""

    def __init__(
        self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, json_logs: JsonLogs
    ):
        self._capsys, self._caplog, self._json_logs = capsys, caplog, json_logs
        self._printed = ""
        self._seen = (0, 0, 0)

    def _sources(self) -> tuple[str, str, str]:
        captured = self._capsys.readouterr()  # consumed by each read, so kept
        self._printed += captured.out + captured.err
        return self._printed, self._caplog.text, self._json_logs.text

    def text(self) -> str:
        return "\n".join(self._sources())

    def text_since_last_look(self) -> str:
        """What was logged or printed since the previous call (or since the test began)."""
        sources = self._sources()
        new = [source[seen:] for source, seen in zip(sources, self._seen, strict=True)]
        self._seen = (len(sources[0]), len(sources[1]), len(sources[2]))
        return "\n".join(new)


@pytest.fixture
def logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, json_logs: JsonLogs
) -> Iterator[Logs]:
    from maas.observability import logger

    previous = logger.log_level
    logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)  # the root logger, where aws_lambda_powertools' modules write
    try:
        yield Logs(capsys, caplog, json_logs)
    finally:
        logger.setLevel(previous)


@pytest.fixture
def text_model(registry: ModelRegistry) -> None:
    registry.publish(TEXT_MODEL, *text_normalizer_model())


def seed_outputs(seed_model: TrainedModel, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(seed_model.files["model.onnx"], providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": rows})[0])


def number_forms(values: np.ndarray) -> set[str]:
    """How a logged number could read: float32's shortest repr and the float64 it widens to.

    Short forms (a handful of characters) are left out: they could appear by chance in a timing."""
    forms: set[str] = set()
    for value in np.asarray(values, dtype=np.float32).ravel():
        forms.update({str(value), repr(float(value)), f"{float(value):.6g}"})
    return {form for form in forms if len(form.lstrip("-")) >= 7}


def input_forms() -> set[str]:
    return {"31337.42", str(MARKER_INT), SECRET, SECRET.lower(), REQUEST_ID} | number_forms(ROWS)


def private_check(text: str, forbidden: set[str]) -> list[str]:
    """What is wrong with `text` as logs: nothing captured, or each payload value it quotes."""
    if not text.strip():
        return ["nothing was captured: the check would prove nothing"]
    return [f"the logs quote {form!r}" for form in sorted(forbidden) if form in text]


def assert_private(logs: Logs, forbidden: set[str]) -> None:
    text = logs.text()
    assert text.strip(), "nothing was captured: the check would prove nothing"
    leaked = sorted(form for form in forbidden if form in text)
    assert not leaked, f"the logs quote payload values {leaked}:\n{text[:4000]}"


def http_event(path: str, body: str | bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return support_http_event(
        "POST", path, body, headers={"content-type": "application/json", **(headers or {})}
    )


def seed_request(rows: np.ndarray = ROWS, **input_fields: Any) -> str:
    item = {
        "name": "input",
        "datatype": "FP32",
        "shape": list(rows.shape),
        "data": rows.tolist(),
        **input_fields,
    }
    return json.dumps({"id": REQUEST_ID, "inputs": [item]})


def test_v2_json_binary_v1_and_explain_requests_log_no_values(
    infer_function: ModuleType, seed_model: TrainedModel, logs: Logs
) -> None:
    outputs = seed_outputs(seed_model, ROWS)

    response = infer_function.lambda_handler(http_event(SEED_INFER, seed_request()), None)
    assert response["statusCode"] == 200, response["body"]

    header = json.dumps(
        {
            "id": REQUEST_ID,
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [2, 10],
                    "parameters": {"binary_data_size": 80},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = http_event(
        SEED_INFER,
        header + ROWS.tobytes(),
        {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )
    response = infer_function.lambda_handler(binary, None)
    assert response["statusCode"] == 200, response["body"]

    predict = http_event("/v1/models/seed-mlp:predict", json.dumps({"instances": ROWS.tolist()}))
    response = infer_function.lambda_handler(predict, None)
    assert response["statusCode"] == 200, response["body"]
    np.testing.assert_allclose(json.loads(response["body"])["predictions"], outputs, rtol=1e-5, atol=1e-6)

    explain_body = json.dumps(
        {**json.loads(seed_request()), "parameters": {"method": "shapley", "n_samples": 5, "target": 1}}
    )
    response = infer_function.lambda_handler(http_event("/v2/models/seed-mlp/explain", explain_body), None)
    assert response["statusCode"] == 200, response["body"]
    attributions = next(
        o for o in json.loads(response["body"])["outputs"] if o["name"] == "input_attribution"
    )
    explained = np.asarray(attributions["data"], dtype=np.float32).reshape(attributions["shape"])

    assert_private(
        logs, input_forms() | number_forms(outputs) | number_forms(explained) | {binary["body"][-40:]}
    )


def binary_text_event(text: str) -> dict[str, Any]:
    headers, body = binary_text_body([text.encode()])
    return http_event(f"/v2/models/{TEXT_MODEL}/infer", body, headers)


def test_a_text_request_json_or_binary_logs_neither_the_text_nor_its_answer(
    infer_function: ModuleType, text_model: None, logs: Logs
) -> None:
    document = {
        "id": REQUEST_ID,
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SECRET]}],
    }
    logs.text_since_last_look()

    response = infer_function.lambda_handler(
        http_event(f"/v2/models/{TEXT_MODEL}/infer", json.dumps(document)), None
    )
    json_logged = logs.text_since_last_look()
    binary_response = infer_function.lambda_handler(binary_text_event(SECRET), None)
    binary_logged = logs.text_since_last_look()

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["outputs"][0]["data"] == [SECRET.lower()]
    assert binary_response["statusCode"] == 200, binary_response["body"]
    assert {
        "json": private_check(json_logged, input_forms()),
        "binary": private_check(binary_logged, input_forms()),
    } == {"json": [], "binary": []}
    assert_private(logs, input_forms())


CLIENT_ERRORS = {
    "wrong-datatype": seed_request(datatype="INT64", data=[[MARKER_INT] * 10] * 2),
    "wrong-shape": seed_request(shape=[2, 5]),
    "strings-for-fp32": seed_request(data=[[SECRET] * 10] * 2),
    "missing-datatype": json.dumps(
        {"id": REQUEST_ID, "inputs": [{"name": "input", "shape": [1, 10], "data": [MARKER] * 10}]}
    ),
    "unknown-input": json.dumps(
        {
            "id": REQUEST_ID,
            "inputs": [{"name": SECRET, "datatype": "FP32", "shape": [1], "data": [MARKER]}],
        }
    ),
    "broken-json": '{"id": "' + REQUEST_ID + '", "inputs": [{"data": [' + str(MARKER) + ", broken",
}


def test_a_client_error_carrying_values_logs_none_of_them(infer_function: ModuleType, logs: Logs) -> None:
    # One after another through one function: what each request logged is the text it added.
    statuses: dict[str, int] = {}
    leaks: dict[str, list[str]] = {}
    logs.text_since_last_look()
    for case, body in CLIENT_ERRORS.items():
        response = infer_function.lambda_handler(http_event(SEED_INFER, body), None)

        statuses[case] = response["statusCode"]
        leaks[case] = private_check(logs.text_since_last_look(), input_forms())

    assert {case: status for case, status in statuses.items() if not 400 <= status < 500} == {}
    assert leaks == {case: [] for case in CLIENT_ERRORS}
    assert_private(logs, input_forms())


def test_an_unexpected_error_whose_text_quotes_the_payload_logs_only_its_type(
    infer_function: ModuleType, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*_: Any, **__: Any) -> Any:
        raise ValueError(f"could not use {MARKER} for {SECRET}")

    monkeypatch.setattr(infer_function.app.service, "infer", fails)

    response = infer_function.lambda_handler(http_event(SEED_INFER, seed_request()), None)

    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": "internal error; see the function's logs"}
    assert '"error_type":"ValueError"' in logs.text().replace(" ", "")
    assert_private(logs, input_forms())


def test_a_direct_invoke_logs_no_values(
    infer_function: ModuleType, seed_model: TrainedModel, logs: Logs
) -> None:
    event = {"model": "seed-mlp", **json.loads(seed_request())}
    event["id"] = "direct-1"  # a direct invoke's id is its log correlation id, so it is no secret

    answer = infer_function.lambda_handler(event, None)

    assert answer["model_name"] == "seed-mlp"
    assert_private(logs, (input_forms() - {REQUEST_ID}) | number_forms(seed_outputs(seed_model, ROWS)))


def test_async_requests_good_and_bad_log_no_values(
    async_function: ModuleType, s3: Any, seed_model: TrainedModel, logs: Logs
) -> None:
    good = {"model": "seed-mlp", "id": "async-good", **json.loads(seed_request())}
    good["id"] = "async-good"
    bad = {"model": "seed-mlp", "id": "async-bad", **json.loads(seed_request(datatype="INT64"))}
    bad["id"] = "async-bad"

    response = async_function.lambda_handler(
        {"Records": [record(good, "m-good"), record(bad, "m-bad")]}, None
    )

    assert response == {"batchItemFailures": []}
    assert result(s3, "async-good")["model_name"] == "seed-mlp"
    assert result(s3, "async-bad")["status"] == 400
    assert_private(logs, (input_forms() - {REQUEST_ID}) | number_forms(seed_outputs(seed_model, ROWS)))


def test_a_batch_job_with_good_and_bad_lines_logs_no_values(
    batch_function: ModuleType, s3: Any, seed_model: TrainedModel, logs: Logs
) -> None:
    lines = [json.dumps(row) for row in ROWS.tolist()]
    lines.append(json.dumps([SECRET] * 10))
    lines.append(json.dumps([MARKER] * 9))
    folder = "jobs/seed-mlp/private-1/"
    submit(s3, folder + "input.jsonl", "\n".join(lines).encode())

    batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    out = read_lines(s3, folder + "output.jsonl")
    assert [("error" in line) for line in out] == [False, False, True, True]
    assert_private(logs, (input_forms() - {REQUEST_ID}) | number_forms(seed_outputs(seed_model, ROWS)))
