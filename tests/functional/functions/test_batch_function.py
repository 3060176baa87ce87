"""The batch function as Lambda runs it: an SQS event carrying a real S3 notification, over moto."""

from __future__ import annotations

import copy
import io
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import pytest

from maas.registry import Manifest
from tests.support.aws import TEST_BUCKET
from tests.support.events import load_event
from tests.support.jobs import Context, job_event, read_lines, read_status, submit
from tests.support.logs import JsonLogs
from tests.support.queues import stored_versions

if TYPE_CHECKING:
    from maas.training import TrainedModel


def onnxruntime_answer(seed_model: TrainedModel, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(seed_model.files["model.onnx"], providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": rows})[0])


def rows_of(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 10)).astype(np.float32)


def test_a_jsonl_job_answers_every_line_in_order_with_onnxruntime_values(
    batch_function: ModuleType, s3: Any, seed_model: TrainedModel, published_seed: Manifest
) -> None:
    rows = rows_of(1300)  # spans three runs of 512 rows
    folder = "jobs/seed-mlp@latest/job-1/"
    submit(s3, folder + "input.jsonl", "\n".join(json.dumps(r) for r in rows.tolist()).encode())

    response = batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    assert response == {"batchItemFailures": []}
    lines = read_lines(s3, folder + "output.jsonl")
    assert len(lines) == 1300
    served = np.asarray([line["outputs"]["output"] for line in lines], dtype=np.float32)
    np.testing.assert_allclose(served, onnxruntime_answer(seed_model, rows), rtol=1e-5, atol=1e-6)
    status = read_status(s3, folder)
    assert status.state == "succeeded"
    assert (status.model, status.model_name, status.model_version) == (
        "seed-mlp@latest",
        "seed-mlp",
        published_seed.version,
    )
    assert (status.counts.lines, status.counts.succeeded, status.counts.failed) == (1300, 1300, 0)
    assert status.output_key == folder + "output.jsonl" and status.input_format == "jsonl"


def test_bad_lines_get_their_own_error_and_the_rest_are_answered(
    batch_function: ModuleType, s3: Any, seed_model: TrainedModel
) -> None:
    rows = rows_of(6)
    lines = [json.dumps(r) for r in rows.tolist()]
    lines[1] = "{not json"
    lines[3] = json.dumps([1.0, 2.0])  # 2 values for a row of 10
    lines[4] = json.dumps({"input": rows[4].tolist()})  # the object form is fine
    lines.insert(5, "")  # an empty line is a line too
    folder = "jobs/seed-mlp/job-2/"
    submit(s3, folder + "input.jsonl", ("\n".join(lines) + "\n").encode())

    batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    out = read_lines(s3, folder + "output.jsonl")
    assert len(out) == 7
    assert out[1] == {"error": "line 2: expected one JSON value per line, got text that is not JSON"}
    assert out[3]["error"].startswith("line 4: input 'input': expected a row of shape [10]")
    assert out[5] == {"error": "line 6: expected a JSON value, got an empty line"}
    good = [0, 2, 4, 6]
    expected = onnxruntime_answer(seed_model, rows[[0, 2, 4, 5]])
    served = np.asarray([out[i]["outputs"]["output"] for i in good], dtype=np.float32)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    status = read_status(s3, folder)
    assert status.state == "succeeded"
    assert (status.counts.lines, status.counts.succeeded, status.counts.failed) == (7, 4, 3)
    assert [e.line for e in status.errors] == [2, 4, 6]


def test_csv_with_a_header_and_npy_inputs_give_the_same_answers(
    batch_function: ModuleType, s3: Any, seed_model: TrainedModel
) -> None:
    rows = rows_of(40, seed=3)
    csv_text = ",".join(f"f{i}" for i in range(10)) + "\n"
    csv_text += "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"
    submit(s3, "jobs/seed-mlp/job-csv/input.csv", csv_text.encode())
    buffer = io.BytesIO()
    np.save(buffer, rows.astype(np.float64))  # float64 casts to the model's FP32
    submit(s3, "jobs/seed-mlp/job-npy/input.npy", buffer.getvalue())

    batch_function.lambda_handler(job_event("jobs/seed-mlp/job-csv/input.csv"), Context())
    batch_function.lambda_handler(job_event("jobs/seed-mlp/job-npy/input.npy"), Context())

    expected = onnxruntime_answer(seed_model, rows)
    for folder in ("jobs/seed-mlp/job-csv/", "jobs/seed-mlp/job-npy/"):
        out = read_lines(s3, folder + "output.jsonl")
        served = np.asarray([line["outputs"]["output"] for line in out], dtype=np.float32)
        np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
        assert read_status(s3, folder).counts.succeeded == 40


def test_the_same_notification_twice_leaves_one_output_and_one_status(
    batch_function: ModuleType, s3: Any
) -> None:
    folder = "jobs/seed-mlp/job-dup/"
    submit(s3, folder + "input.jsonl", "\n".join(json.dumps(r) for r in rows_of(5).tolist()).encode())
    event = job_event(folder + "input.jsonl")

    first = batch_function.lambda_handler(event, Context())
    written = stored_versions(s3, folder)
    second = batch_function.lambda_handler(copy.deepcopy(event), Context())

    assert first == second == {"batchItemFailures": []}
    assert [key for key, _ in written] == [
        folder + name for name in ("input.jsonl", "output.jsonl", "status.json")
    ]
    assert stored_versions(s3, folder) == written


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("jobs/no-such-model/j1/input.jsonl", b"[1]\n", "no-such-model"),
        ("jobs/Bad_Name!/j2/input.jsonl", b"[1]\n", "model name: expected"),
        ("jobs/seed-mlp/j3/input.npy", b"\x93NUMPY garbage", "input.npy: expected format version"),
        ("jobs/seed-mlp/j4/input.npy", b"PK\x03\x04", "input.npy: expected a NumPy .npy file"),
    ],
)
def test_an_unknown_model_or_a_malformed_file_ends_in_a_failed_status_that_says_why(
    batch_function: ModuleType, s3: Any, key: str, body: bytes, reason: str
) -> None:
    submit(s3, key, body)

    response = batch_function.lambda_handler(job_event(key), Context())

    assert response == {"batchItemFailures": []}  # answered for good: never retried, never dropped
    folder = key.rpartition("/")[0] + "/"
    status = read_status(s3, folder)
    assert status.state == "failed"
    assert status.error is not None and reason in status.error
    assert status.output_key is None
    listed = s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=folder)["Contents"]
    assert "output.jsonl" not in {item["Key"].rpartition("/")[2] for item in listed}


def test_a_truncated_npy_fails_the_job_and_leaves_no_partial_output(
    batch_function: ModuleType, s3: Any
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, rows_of(2000))
    key = "jobs/seed-mlp/j-trunc/input.npy"
    submit(s3, key, buffer.getvalue()[:-100])

    batch_function.lambda_handler(job_event(key), Context())

    status = read_status(s3, "jobs/seed-mlp/j-trunc/")
    assert status.state == "failed" and "the header promises 2000 rows" in (status.error or "")
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="jobs/seed-mlp/j-trunc/output")
    assert s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", []) == []


def test_a_job_that_runs_out_of_time_says_so_instead_of_being_killed(
    batch_function: ModuleType, s3: Any
) -> None:
    key = "jobs/seed-mlp/j-slow/input.jsonl"
    submit(s3, key, b"\n".join(json.dumps(r).encode() for r in rows_of(3).tolist()))

    batch_function.lambda_handler(job_event(key), Context(remaining_ms=5_000))

    status = read_status(s3, "jobs/seed-mlp/j-slow/")
    assert status.state == "failed" and "function's timeout" in (status.error or "")


def test_a_message_that_is_not_an_s3_event_is_poison_and_reported_alone(
    batch_function: ModuleType, s3: Any
) -> None:
    key = "jobs/seed-mlp/j-ok/input.jsonl"
    submit(s3, key, json.dumps(rows_of(1)[0].tolist()).encode())
    good = job_event(key, message_id="good-1")["Records"][0]
    poison = copy.deepcopy(good) | {"messageId": "poison-1", "body": "not json"}
    test_event = load_event("sqs_s3_test_event.json")["Records"][0]

    response = batch_function.lambda_handler({"Records": [good, poison, test_event]}, Context())

    assert response == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}
    assert read_status(s3, "jobs/seed-mlp/j-ok/").state == "succeeded"


def test_outputs_and_other_keys_under_jobs_never_start_a_job(batch_function: ModuleType, s3: Any) -> None:
    key = "jobs/seed-mlp/j-out/output.jsonl"
    submit(s3, key, b"{}\n")

    response = batch_function.lambda_handler(job_event(key), Context())

    assert response == {"batchItemFailures": []}
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix="jobs/seed-mlp/j-out/status")


def test_outputs_go_next_to_the_input_however_the_reference_is_spelled(
    batch_function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    folder = "jobs/seed-mlp/versions/latest/job-path/"  # the alias spelled as a path, as V2 routes do
    submit(s3, folder + "input.jsonl", json.dumps(rows_of(1)[0].tolist()).encode())

    batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    status = read_status(s3, folder)
    assert (status.model, status.model_version, status.output_key) == (
        "seed-mlp/versions/latest",
        published_seed.version,
        folder + "output.jsonl",
    )


def test_payload_values_never_reach_the_logs(
    batch_function: ModuleType, s3: Any, capsys: pytest.CaptureFixture[str], json_logs: JsonLogs
) -> None:
    marker = 123.456789
    key = "jobs/seed-mlp/j-private/input.jsonl"
    submit(s3, key, f"{json.dumps([marker] * 10)}\n{json.dumps([marker] * 3)}\n[{marker}".encode())

    batch_function.lambda_handler(job_event(key), Context())

    captured = capsys.readouterr()
    assert "job finished" in json_logs.text
    assert "123.456" not in captured.out + captured.err + json_logs.text


# ---- malformed inputs from outside: each one ends in a status.json that says why, never in the DLQ


def npy_file(
    header: str, data: bytes = b"", *, version: int = 1, declared_length: int | None = None
) -> bytes:
    raw = header.encode("latin1")
    length = len(raw) if declared_length is None else declared_length
    length_field = length.to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + length_field + raw + data


def npy_header(descr: str, shape: tuple[int, ...]) -> str:
    return f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        (
            "unbalanced",  # np.lib.format let tokenize.TokenError escape here
            npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 10"),
            "input.npy: expected a header that is a Python dict literal",
        ),
        (
            "u0",
            npy_file(npy_header("<U0", (3, 10))),
            "input.npy: expected strings of at least one character, got the zero-width dtype <U0",
        ),
        (
            "huge-header",
            npy_file("{" * 64, version=2, declared_length=800_000_000),
            "input.npy: expected a header of at most 10000 bytes (numpy's limit), "
            "got one declaring 800000000",
        ),
        (
            "empty-rows",  # 128 bytes that once claimed a million output lines
            npy_file(npy_header("<f4", (1_000_000, 0)).ljust(118) + "\n"),
            "input.npy: expected rows of at least one element, got shape [1000000, 0]",
        ),
        (
            "negative-rows",
            npy_file(npy_header("<f4", (-5, 10))),
            "input.npy: expected a shape of non-negative dimensions, got [-5, 10]",
        ),
        (
            "rows-past-the-file",
            npy_file(npy_header("<f4", (1_000_000, 10)), bytes(40)),
            "input.npy: the header promises 1000000 rows of 40 bytes, the file holds 40 bytes of data",
        ),
        (
            "object",
            npy_file(npy_header("|O", (2, 10)), bytes(160)),
            "input.npy: expected numbers or fixed-width strings, got an object array (a pickle)",
        ),
        (
            "structured",
            npy_file("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 10), }", bytes(80)),
            "input.npy: expected numbers or fixed-width strings, got a structured dtype",
        ),
        (
            "row-past-the-request-limit",  # read whole, so refused from the header, before any read
            npy_file(npy_header("<f4", (1, 2_000_000)), bytes(8_000_000)),
            "input.npy rows: expected at most 6291456 bytes a row (MAAS_MAX_REQUEST_BYTES), got 8000000",
        ),
        (
            "wrong-row",
            npy_file(npy_header("<f4", (2, 3)), bytes(24)),
            "input.npy rows: expected a row of shape [10] (-1 = any size), got [3]",
        ),
    ],
)
def test_a_malformed_npy_ends_in_a_failed_status_not_in_the_dead_letter_queue(
    batch_function: ModuleType, s3: Any, name: str, body: bytes, reason: str
) -> None:
    folder = f"jobs/seed-mlp/npy-{name}/"
    submit(s3, folder + "input.npy", body)

    response = batch_function.lambda_handler(job_event(folder + "input.npy"), Context())

    assert response == {"batchItemFailures": []}
    status = read_status(s3, folder)
    assert (status.state, status.output_key) == ("failed", None)
    assert status.error is not None and status.error.startswith(reason)
    assert "Contents" not in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=folder + "output")


def csv_rows(rows: np.ndarray) -> list[str]:
    return [",".join(repr(float(v)) for v in row) for row in rows]


@pytest.mark.parametrize(
    ("first_line", "error"),
    [
        (
            "NA," + ",".join(["1.0"] * 9),
            "line 1: input 'input': expected FP32 values, got a cell that is not a number",
        ),
        ("\0" + ",1.0" * 9, "line 1: input 'input': expected FP32 values, got a cell that is not a number"),
        (
            "NA,NA,NA,NA,NA,NA,NA,NA,NA,NA",
            "line 1: input 'input': expected FP32 values, got a cell that is not a number",
        ),
        (",,,,,,,,,", "line 1: input 'input': expected FP32 values, got an empty cell"),
        ("", "line 1: input 'input': expected 10 values per record (shape [10]), got 0"),
    ],
)
def test_a_bad_first_csv_line_is_a_line_error_and_every_output_line_stays_in_place(
    batch_function: ModuleType, s3: Any, seed_model: TrainedModel, first_line: str, error: str
) -> None:
    rows = rows_of(4, seed=5)
    folder = "jobs/seed-mlp/csv-first/"
    submit(s3, folder + "input.csv", "\n".join([first_line, *csv_rows(rows)]).encode())

    batch_function.lambda_handler(job_event(folder + "input.csv"), Context())

    out = read_lines(s3, folder + "output.jsonl")
    assert len(out) == 5 and out[0] == {"error": error}
    served = np.asarray([line["outputs"]["output"] for line in out[1:]], dtype=np.float32)
    np.testing.assert_allclose(served, onnxruntime_answer(seed_model, rows), rtol=1e-5, atol=1e-6)
    status = read_status(s3, folder)
    assert (status.csv_header, status.counts.lines, status.counts.failed) == (False, 5, 1)


@pytest.mark.parametrize(
    ("metadata", "first_line", "outputs", "csv_header"),
    [
        ({"csv-header": "true"}, ",".join(["1.0"] * 10), 3, True),  # declared: skipped though it is data
        ({"csv-header": "TRUE"}, "whatever", 3, True),
        ({"csv-header": "false"}, ",".join(f"f{i}" for i in range(10)), 4, False),  # declared data: an error
        ({}, ",".join(f"f{i}" for i in range(10)), 3, True),  # unambiguous names
        ({}, ",".join(["1.0"] * 10), 4, False),
    ],
)
def test_the_job_can_declare_whether_line_1_is_a_header_in_the_input_objects_metadata(
    batch_function: ModuleType,
    s3: Any,
    metadata: dict[str, str],
    first_line: str,
    outputs: int,
    csv_header: bool,
) -> None:
    folder = "jobs/seed-mlp/csv-declared/"
    text = "\n".join([first_line, *csv_rows(rows_of(3, seed=6))])
    s3.put_object(Bucket=TEST_BUCKET, Key=folder + "input.csv", Body=text.encode(), Metadata=metadata)

    batch_function.lambda_handler(job_event(folder + "input.csv"), Context())

    out = read_lines(s3, folder + "output.jsonl")
    assert len(out) == outputs
    assert all("outputs" in line for line in out[-3:])
    assert read_status(s3, folder).csv_header is csv_header


def test_a_csv_header_setting_that_is_not_true_or_false_fails_the_job(
    batch_function: ModuleType, s3: Any
) -> None:
    folder = "jobs/seed-mlp/csv-bad-setting/"
    s3.put_object(Bucket=TEST_BUCKET, Key=folder + "input.csv", Body=b"1", Metadata={"csv-header": "yes"})

    batch_function.lambda_handler(job_event(folder + "input.csv"), Context())

    status = read_status(s3, folder)
    assert (status.state, status.error) == (
        "failed",
        "input.csv metadata csv-header: expected true or false, got 'yes'",
    )


def test_csv_cells_past_the_csv_modules_limit_and_bad_bytes_are_line_errors_not_a_failed_job(
    batch_function: ModuleType, s3: Any
) -> None:
    good = csv_rows(rows_of(2, seed=7))
    long_cell = "9" * 200_000 + ",1" * 9  # a cell past Python's 131,072-character csv field limit
    folder = "jobs/seed-mlp/csv-long/"
    body = "\n".join([good[0], long_cell, good[1]]).encode() + b"\n\xff\xfe\n" + good[0].encode()
    submit(s3, folder + "input.csv", body)

    response = batch_function.lambda_handler(job_event(folder + "input.csv"), Context())

    assert response == {"batchItemFailures": []}
    out = read_lines(s3, folder + "output.jsonl")
    assert [sorted(line) for line in out] == [["outputs"], ["outputs"], ["outputs"], ["error"], ["outputs"]]
    assert out[3] == {"error": "line 4: expected UTF-8 text, got other bytes"}
    assert read_status(s3, folder).state == "succeeded"


def test_jsonl_nan_and_infinity_are_fp_values_and_every_line_keeps_its_place(
    batch_function: ModuleType, s3: Any, seed_model: TrainedModel
) -> None:
    rows = rows_of(3, seed=8)
    special = "[NaN, Infinity, -Infinity, 1e400, " + "1" + "0" * 5000 + ", 0, 0, 0, 0, 0]"
    folder = "jobs/seed-mlp/jsonl-special/"
    submit(
        s3,
        folder + "input.jsonl",
        "\n".join(
            [json.dumps(rows[0].tolist()), special, *(json.dumps(r) for r in rows[1:].tolist())]
        ).encode(),
    )

    batch_function.lambda_handler(job_event(folder + "input.jsonl"), Context())

    out = read_lines(s3, folder + "output.jsonl")
    assert [sorted(line) for line in out] == [["outputs"]] * 4
    served = np.asarray([out[i]["outputs"]["output"] for i in (0, 2, 3)], dtype=np.float32)
    np.testing.assert_allclose(served, onnxruntime_answer(seed_model, rows), rtol=1e-5, atol=1e-6)
    assert read_status(s3, folder).counts.failed == 0
