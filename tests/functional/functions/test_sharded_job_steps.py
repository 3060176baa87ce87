"""Sharded batch jobs through the batch function as Step Functions runs them: every step a direct invoke
with the payload template.yaml's JobStateMachine sends (plan, each round's shards in a shuffled order with
RunShard's retries, merge, until done), over moto, with shard sizes small enough that a small input makes
many shards. Each job's output must be byte for byte what the single path writes for the same input."""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from maas.errors import InvalidInput
from maas.registry import Manifest, ModelRegistry
from maas.service.job_layout import JobStatus
from maas.service.shard_layout import JobPlan, execution_name
from tests.support.aws import TEST_BUCKET
from tests.support.functions import start_function
from tests.support.jobs import (
    Context,
    StepRun,
    batch_mean_model,
    job_event,
    job_reference,
    read_status,
    submit,
)
from tests.support.logs import JsonLogs
from tests.support.models import pair_sum_model
from tests.support.queues import stored_versions

SHARD_BYTES = 2000
SECRET = "my passport number is X1234567"
CSV_HEADER = ",".join(f"f{i}" for i in range(10))


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest) -> ModuleType:
    return start_function(monkeypatch, "batch", MAAS_JOB_SHARD_BYTES=str(SHARD_BYTES))


def rows_of(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 10)).astype(np.float32)


def output_of(s3: Any, folder: str) -> bytes:
    return bytes(s3.get_object(Bucket=TEST_BUCKET, Key=f"{folder}output.jsonl")["Body"].read())


def keys_under(s3: Any, prefix: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix).get("Contents", [])]


def run_single(function: ModuleType, s3: Any, folder: str, name: str, body: bytes, **put: Any) -> JobStatus:
    s3.put_object(Bucket=TEST_BUCKET, Key=folder + name, Body=body, **put)
    assert function.lambda_handler(job_event(folder + name), Context()) == {"batchItemFailures": []}
    return read_status(s3, folder)


def sharded_run(
    function: ModuleType, s3: Any, version: int, folder: str, name: str, body: bytes, **put: Any
) -> StepRun:
    s3.put_object(Bucket=TEST_BUCKET, Key=folder + name, Body=body, **put)
    return StepRun(function, folder + name, version)


def assert_same_job(s3: Any, single: str, sharded: str) -> tuple[JobStatus, JobStatus]:
    """The sharded job wrote the single path's output, bytes and all, and a status that agrees with it."""
    assert output_of(s3, sharded) == output_of(s3, single)
    one, many = read_status(s3, single), read_status(s3, sharded)
    assert many.state == one.state == "succeeded"
    assert (many.counts, many.errors, many.csv_header) == (one.counts, one.errors, one.csv_header)
    assert many.model_version == one.model_version and many.input_bytes == one.input_bytes
    assert many.shards is not None and one.shards is None
    # Each shard starts where the one before it ended: every record answered once.
    assert all(shard.start == before.end for before, shard in itertools.pairwise(many.shards))
    assert sum(shard.succeeded for shard in many.shards) == many.counts.succeeded
    # Only the documents are left: the shard outputs are in output.jsonl now.
    assert not [key for key in keys_under(s3, f"{sharded}shards/") if key.endswith(".jsonl")]
    return one, many


def jsonl_body(count: int, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rows = rows_of(count, seed)
    return [json.dumps(row) for row in rows.tolist()], rows


# ---- byte-identical output


@pytest.mark.parametrize("seed", [0, 1])
def test_a_jsonl_job_in_shards_writes_the_single_paths_bytes_with_global_line_numbers(
    function: ModuleType, s3: Any, published_seed: Manifest, seed: int
) -> None:
    lines, _ = jsonl_body(120, seed=seed)
    lines[3] = "{not json"
    lines[40] = ""  # an empty line is a line too
    lines[77] = "[1, 2]"
    lines[118] = '{"input": "text"}'
    # A byte-order mark, CRLF line ends and no final newline: each is the single path's business alone.
    body = b"\xef\xbb\xbf" + "\r\n".join(lines).encode()
    run_single(function, s3, "jobs/seed-mlp/one/", "input.jsonl", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.jsonl", body)
    run.random.seed(seed)

    assert run.run(s3) == "succeeded"

    _, many = assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")
    assert [error.line for error in many.errors] == [4, 41, 78, 119]
    assert many.shards is not None and len(many.shards) > 5
    assert [shard.lines for shard in many.shards] != [] and sum(s.lines for s in many.shards) == 120
    # Round 1 renumbered exactly the shards past the first whose output holds error lines.
    renumbered = {item["index"] for item in run.rounds[1]}
    with_errors = {shard.index for shard in many.shards if shard.failed and shard.index > 0}
    assert len(run.rounds) == 2 and renumbered == with_errors


def test_a_20000_line_jsonl_job_whose_shards_cut_across_the_batches_writes_the_single_paths_bytes(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest
) -> None:
    # Shards of about 300 lines: each of the single path's 512-row runs is split between shards, so every
    # row runs in another batch than there, and must still be answered to the same bytes.
    function = start_function(monkeypatch, "batch", MAAS_JOB_SHARD_BYTES=str(60_000))
    lines, _ = jsonl_body(20_000, seed=12)
    for number in range(7, 20_000, 997):
        lines[number] = "[0.5, " + lines[number][1:] if number % 2 else "{}"
    body = "\n".join(lines).encode() + b"\n"
    run_single(function, s3, "jobs/seed-mlp/one/", "input.jsonl", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.jsonl", body)

    assert run.run(s3) == "succeeded"

    _, many = assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")
    assert many.shards is not None and len(many.shards) > 50 and many.counts.failed == 21


def quoted_csv(rows: np.ndarray, *, crlf: bool = False) -> str:
    """A csv file whose every fifth record has a quoted first cell holding newlines (a valid number still:
    float() takes the whitespace) and whose every seventh has a bad cell."""
    end = "\r\n" if crlf else "\n"
    records = [CSV_HEADER]
    for number, row in enumerate(rows.tolist()):
        cells = [repr(value) for value in row]
        if number % 5 == 0:
            cells[0] = f'"{end}{cells[0]}{end}{end}"'
        if number % 7 == 3:
            cells[4] = "oops"
        records.append(",".join(cells))
    return end.join(records) + end


@pytest.mark.parametrize("crlf", [False, True])
def test_a_csv_job_with_multi_line_quoted_cells_and_a_header_writes_the_single_paths_bytes(
    function: ModuleType, s3: Any, published_seed: Manifest, crlf: bool
) -> None:
    body = quoted_csv(rows_of(150, seed=2), crlf=crlf).encode()
    run_single(function, s3, "jobs/seed-mlp/one/", "input.csv", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.csv", body)

    assert run.run(s3) == "succeeded"

    one, many = assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")
    assert one.csv_header is True and len(many.errors) == 20 and many.errors[-1].line > 100


def test_a_csv_cut_inside_a_quoted_cell_is_found_by_the_merge_and_the_shard_runs_again_from_its_true_start(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    text = quoted_csv(rows_of(150, seed=3))
    body = text.encode()
    run_single(function, s3, "jobs/seed-mlp/one/", "input.csv", body)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.csv", body)
    # A line start inside a quoted cell, past the middle: a cut there is wrong (not a record start).
    wrong = text.index('"\n', len(text) // 2) + 2
    forced: dict[str, int] = {}

    def cut_wrong(round_number: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if round_number != 0:
            return items
        (index,) = [i for i, item in enumerate(items) if item["start"] < wrong < item["end"]]
        items[index]["end"] = items[index + 1]["start"] = wrong
        forced["index"] = index + 1
        plan = JobPlan.model_validate_json(
            s3.get_object(Bucket=TEST_BUCKET, Key=f"{folder}shards/plan.json")["Body"].read()
        )
        moved = plan.model_copy(
            update={"shards": [type(plan.shards[0]).model_validate(item) for item in items]}
        )
        s3.put_object(Bucket=TEST_BUCKET, Key=f"{folder}shards/plan.json", Body=moved.model_dump_json())
        return items

    run.before_round = cut_wrong

    assert run.run(s3) == "succeeded"

    assert_same_job(s3, "jobs/seed-mlp/one/", folder)
    # A later round ran the shard after the wrong cut again, from where its neighbour's last record ended
    # (the planner's own cuts in this file, its quoted cells' lines all alike, may be wrong guesses too).
    reruns = [
        item
        for items in run.rounds[1:]
        for item in items
        if item["index"] == forced["index"] and "renumber_from" not in item
    ]
    (rerun,) = reruns
    assert rerun["start"] > wrong
    status = read_status(s3, folder)
    assert status.shards is not None and status.shards[forced["index"]].start == rerun["start"]


def npy_bytes(rows: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, rows)
    return buffer.getvalue()


def test_an_npy_job_in_shards_writes_the_single_paths_bytes(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    rows = rows_of(1300, seed=4).astype(np.float64)  # float64 casts to the model's FP32, per chunk
    rows[700, 3] = np.nan
    body = npy_bytes(rows)
    run_single(function, s3, "jobs/seed-mlp/one/", "input.npy", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.npy", body)

    assert run.run(s3) == "succeeded"

    _, many = assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")
    assert many.shards is not None and [shard.lines for shard in many.shards] == [512, 512, 276]
    assert len(run.rounds) == 1  # npy rows are numbered globally from the start: nothing to renumber


def test_an_npy_job_of_wide_rows_runs_each_row_in_the_single_paths_batch(
    function: ModuleType, s3: Any, registry: ModelRegistry
) -> None:
    # 34,000-byte rows: the single path reads and runs 493 rows at a time (NPY_CHUNK_BYTES), not the 512
    # batch rows, and the model's answers tell which rows ran together.
    width = 8500
    version = registry.publish("batch-mean", *batch_mean_model(width))
    rows = np.random.default_rng(19).normal(size=(520, width)).astype(np.float32)
    body = npy_bytes(rows)
    run_single(function, s3, "jobs/batch-mean/one/", "input.npy", body)
    run = sharded_run(function, s3, version.version, "jobs/batch-mean/many/", "input.npy", body)

    assert run.run(s3) == "succeeded"

    _, many = assert_same_job(s3, "jobs/batch-mean/one/", "jobs/batch-mean/many/")
    assert many.shards is not None and [shard.lines for shard in many.shards] == [493, 27]


# ---- failures


def storage_fault(function: ModuleType, byte_range: str, times: int | None) -> list[str]:
    """Make the function's reads of `byte_range` of any object fail as an unreachable S3 does, `times`
    times (None: always); the list records each fault."""
    faults: list[str] = []

    def fail_read(params: dict[str, Any], **_: Any) -> None:
        if params.get("headers", {}).get("Range") == byte_range and (times is None or len(faults) < times):
            faults.append(byte_range)
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    function.app.steps.steps.s3.meta.events.register("before-call.s3.GetObject", fail_read)
    return faults


def fault_shard(function: ModuleType, run: StepRun, index: int, times: int | None) -> dict[str, Any]:
    """From round 0 on, shard `index`'s read fails `times` times; the shard, as round 0 has it."""
    chosen: dict[str, Any] = {}

    def install(round_number: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if round_number == 0:
            chosen.update(items[index])
            storage_fault(function, f"bytes={chosen['start']}-{chosen['end'] - 1}", times)
        return items

    run.before_round = install
    return chosen


def test_a_shard_that_fails_twice_in_transit_is_retried_alone_and_the_output_is_the_same(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=5)
    body = "\n".join(lines).encode() + b"\n"
    run_single(function, s3, "jobs/seed-mlp/one/", "input.jsonl", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.jsonl", body)
    fault_shard(function, run, 3, times=2)

    assert run.run(s3) == "succeeded"

    assert run.raised == [("shard", "Unavailable"), ("shard", "Unavailable")]
    assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")
    assert not [key for key in keys_under(s3, "jobs/seed-mlp/many/shards/") if key.endswith(".failed.json")]


def test_a_shard_that_always_fails_fails_the_job_with_a_status_naming_it(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=6)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.jsonl", "\n".join(lines).encode())
    shard = fault_shard(function, run, 4, times=None)

    assert run.run(s3) == "failed"

    assert run.raised == [("shard", "Unavailable")] * 4
    status = read_status(s3, folder)
    assert status.state == "failed" and status.output_key is None
    assert status.error is not None
    assert status.error.startswith(
        f"job: shard 4 (input bytes {shard['start']}-{shard['end']}) failed: Unavailable: "
    )
    assert "storage unreachable (EndpointConnectionError)" in status.error
    assert f"{folder}output.jsonl" not in keys_under(s3, folder)
    assert s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", []) == []


def test_an_unexpected_failure_is_retried_and_told_on_by_its_type_alone(
    function: ModuleType, s3: Any, published_seed: Manifest, json_logs: JsonLogs
) -> None:
    lines, _ = jsonl_body(60, seed=10)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.jsonl", "\n".join(lines).encode())

    def install(round_number: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        wanted = f"bytes={items[1]['start']}-{items[1]['end'] - 1}"

        def fail_read(params: dict[str, Any], **_: Any) -> None:
            if params.get("headers", {}).get("Range") == wanted:
                raise RuntimeError(f"a bug that quotes the input: {SECRET}")

        function.app.steps.steps.s3.meta.events.register("before-call.s3.GetObject", fail_read)
        return items

    run.before_round = install

    assert run.run(s3) == "failed"

    assert run.raised == [("shard", "JobStepFailed")] * 4
    status = read_status(s3, folder)
    assert status.error is not None and status.error.endswith(
        "failed: JobStepFailed: job step shard: failed unexpectedly (RuntimeError); the batch function's "
        "logs have its traceback"
    )
    assert "job step failed unexpectedly" in json_logs.text
    assert SECRET not in json_logs.text


def test_payload_values_never_reach_the_logs_of_a_sharded_job(
    function: ModuleType,
    s3: Any,
    published_seed: Manifest,
    json_logs: JsonLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    marker = 123.456789
    lines = [json.dumps([marker] * 10)] * 40 + [json.dumps([marker] * 3), f"[{marker}"] * 20
    run = sharded_run(
        function, s3, published_seed.version, "jobs/seed-mlp/p/", "input.jsonl", "\n".join(lines).encode()
    )

    assert run.run(s3) == "succeeded"

    captured = capsys.readouterr()
    assert "job shard answered" in json_logs.text and "job finished" in json_logs.text
    assert "123.456" not in captured.out + captured.err + json_logs.text


def test_a_malformed_shard_fails_the_job_without_retries(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest
) -> None:
    function = start_function(
        monkeypatch, "batch", MAAS_JOB_SHARD_BYTES="2000", MAAS_MAX_REQUEST_BYTES="1500"
    )
    records = [",".join(repr(value) for value in row) for row in rows_of(80, seed=7).tolist()]
    # A quoted cell of short lines, longer than a record may be: the single path fails the whole job.
    records[60] = '"' + "1\n" * 800 + '"' + records[60][records[60].index(",") :]
    body = ("\n".join(records) + "\n").encode()
    one = run_single(function, s3, "jobs/seed-mlp/one/", "input.csv", body)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.csv", body)

    assert run.run(s3) == "failed"

    assert run.raised == []  # written as data, not raised: no retry can mend it
    assert one.error is not None and one.error.startswith(
        "input.csv: the record starting at line 61 is longer"
    )
    status = read_status(s3, folder)
    assert status.error is not None and re.fullmatch(
        rf"job: shard [1-9]\d* \(input bytes \d+-\d+\) failed: MalformedJobInput: {re.escape(one.error)}",
        status.error,
    )


@pytest.mark.parametrize("where", [45, 99], ids=["inside", "last-line"])
def test_a_line_too_long_fails_the_job_in_shards_as_in_the_single_path_wherever_the_reads_fall(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest, where: int
) -> None:
    # The whole file is one read on either path: the bound must hold for complete lines, not only for
    # one a read ends inside.
    function = start_function(
        monkeypatch, "batch", MAAS_JOB_SHARD_BYTES="2000", MAAS_MAX_REQUEST_BYTES="1500"
    )
    lines, _ = jsonl_body(100, seed=13)
    lines[where] = json.dumps([0.25] * 10) + " " * 1500
    body = "\n".join(lines).encode() + b"\n"
    one = run_single(function, s3, "jobs/seed-mlp/one/", "input.jsonl", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.jsonl", body)

    assert run.run(s3) == "failed"

    many = read_status(s3, "jobs/seed-mlp/many/")
    assert (one.state, one.error) == (
        "failed",
        f"input: line {where + 1} is longer than 1500 bytes (MAAS_MAX_REQUEST_BYTES)",
    )
    # Told as the single path tells it, the line numbered in the whole input, naming the shard.
    assert many.state == "failed" and many.error is not None and one.error is not None
    assert re.fullmatch(
        rf"job: shard [1-9]\d* \(input bytes \d+-\d+\) failed: MalformedJobInput: {re.escape(one.error)}",
        many.error,
    )
    assert run.raised == [] and "jobs/seed-mlp/many/output.jsonl" not in keys_under(s3, "jobs/seed-mlp/many/")


@pytest.mark.parametrize("name", ["input.jsonl", "input.csv", "input.npy"])
def test_a_shard_out_of_time_fails_the_job_at_its_line_in_the_input_saying_to_lower_the_shard_size(
    function: ModuleType, s3: Any, published_seed: Manifest, name: str
) -> None:
    rows = rows_of(1300 if name == "input.npy" else 200, seed=14)  # npy shards hold 512 rows
    body = {
        "input.jsonl": "\n".join(json.dumps(row) for row in rows.tolist()).encode(),
        "input.csv": quoted_csv(rows).encode(),
        "input.npy": npy_bytes(rows),
    }[name]
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, name, body)
    # Every shard past the first starts with too little time left to run a batch.
    run.shard_context = lambda shard: Context(remaining_ms=5_000) if shard["index"] > 0 else None

    assert run.run(s3) == "failed"

    assert run.raised == []  # written as data: the same shard would run out of time again
    plan = JobPlan.model_validate_json(
        s3.get_object(Bucket=TEST_BUCKET, Key=f"{folder}shards/plan.json")["Body"].read()
    )
    first_key = f"{folder}shards/00000-{plan.shards[0].start}.json"
    first = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key=first_key)["Body"].read())
    # Shard 1 starts at the line after the first shard's (npy: rows are numbered so from the start).
    assert read_status(s3, folder).error == (
        f"job: shard 1 (input bytes {first['end']}-{plan.shards[1].end}) failed: JobOutOfTime: job: expected "
        "each shard to finish within the function's timeout, got through 0 lines of this one, stopping at "
        f"line {first['lines'] + 1}; lower MAAS_JOB_SHARD_BYTES (template parameter JobShardBytes) for "
        "smaller shards"
    )


@pytest.mark.parametrize(
    ("name", "body", "metadata"),
    [
        ("input.npy", b"\x93NUMPY\x09\x00" + b"x" * 3000, {}),
        ("input.npy", npy_bytes(rows_of(100).reshape(100, 2, 5)), {}),
        ("input.npy", npy_bytes(np.array([["a"] * 10] * 100)), {}),
        ("input.csv", (CSV_HEADER + "\n" + "1,2,3,4,5,6,7,8,9,0\n" * 200).encode(), {"csv-header": "maybe"}),
    ],
    ids=["npy-version", "npy-shape", "npy-dtype", "csv-header-metadata"],
)
def test_a_job_the_plan_finds_malformed_fails_as_the_single_path_does(
    function: ModuleType,
    s3: Any,
    published_seed: Manifest,
    name: str,
    body: bytes,
    metadata: dict[str, str],
) -> None:
    one = run_single(function, s3, "jobs/seed-mlp/one/", name, body, Metadata=metadata)
    run = sharded_run(
        function, s3, published_seed.version, "jobs/seed-mlp/many/", name, body, Metadata=metadata
    )

    assert run.run(s3) == "failed"

    many = read_status(s3, "jobs/seed-mlp/many/")
    assert (many.state, many.error, many.model_version) == ("failed", one.error, one.model_version)
    assert run.rounds == [] and keys_under(s3, "jobs/seed-mlp/many/shards/") == []


@pytest.mark.parametrize("name", ["input.csv", "input.npy"])
def test_a_csv_or_npy_job_for_a_two_input_model_fails_in_its_plan_as_in_the_single_path(
    function: ModuleType, s3: Any, registry: ModelRegistry, name: str
) -> None:
    version = registry.publish("pair", *pair_sum_model())
    body = npy_bytes(rows_of(100)[:, :2].copy()) if name.endswith("npy") else b"1,2\n" * 1000
    one = run_single(function, s3, "jobs/pair/one/", name, body)
    run = sharded_run(function, s3, version.version, "jobs/pair/many/", name, body)

    assert run.run(s3) == "failed"

    many = read_status(s3, "jobs/pair/many/")
    assert one.error is not None and "model 'pair' has 2 inputs" in one.error
    assert (many.error, many.model_version) == (one.error, one.model_version)


def test_a_jsonl_job_for_a_two_input_model_in_shards_writes_the_single_paths_bytes(
    function: ModuleType, s3: Any, registry: ModelRegistry
) -> None:
    version = registry.publish("pair", *pair_sum_model())
    lines = [json.dumps({"a": [i, i + 0.5], "b": [1.0, -i]}) for i in range(150)]
    lines[100] = json.dumps({"a": [1, 2]})
    body = "\n".join(lines).encode()
    run_single(function, s3, "jobs/pair/one/", "input.jsonl", body)
    run = sharded_run(function, s3, version.version, "jobs/pair/many/", "input.jsonl", body)

    assert run.run(s3) == "succeeded"

    _, many = assert_same_job(s3, "jobs/pair/one/", "jobs/pair/many/")
    assert [error.line for error in many.errors] == [101]


def etag_of(s3: Any, key: str) -> str:
    return str(s3.head_object(Bucket=TEST_BUCKET, Key=key)["ETag"])


def test_an_input_replaced_while_its_shards_run_fails_the_job_instead_of_mixing_two_inputs(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=15)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.jsonl", "\n".join(lines).encode())
    planned: list[str] = []

    def replace_input(round_number: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The same size, other lines: only the object's identity tells them apart.
        planned.append(etag_of(s3, folder + "input.jsonl"))
        other, _ = jsonl_body(100, seed=16)
        s3.put_object(Bucket=TEST_BUCKET, Key=folder + "input.jsonl", Body="\n".join(other).encode())
        return items

    run.before_round = replace_input

    assert run.run(s3) == "failed"

    assert run.raised == []  # no retry can bring the planned object back
    status = read_status(s3, folder)
    assert status.error is not None and re.fullmatch(
        r"job: shard 0 \(input bytes 0-\d+\) failed: JobInputChanged: "
        + re.escape(
            f"input.jsonl: expected the object planned (ETag {planned[0]}), got one replaced since; upload "
            "it again as a new job"
        ),
        status.error,
    )
    assert f"{folder}output.jsonl" not in keys_under(s3, folder)


def test_an_input_replaced_while_the_job_is_planned_fails_it_saying_so(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=17)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.jsonl", "\n".join(lines).encode())
    planned = etag_of(s3, folder + "input.jsonl")
    replacing = threading.Lock()

    def replace_input(params: dict[str, Any], **_: Any) -> None:
        # The plan's first ranged read finds another object: the plan read the first one's size. The planner
        # reads its windows on several threads; one replaces the object, the others wait: two puts racing in
        # moto's in-process store can close the body one of them is still reading.
        if "Range" not in params.get("headers", {}):
            return
        with replacing:
            if etag_of(s3, folder + "input.jsonl") == planned:
                s3.put_object(Bucket=TEST_BUCKET, Key=folder + "input.jsonl", Body=b"[1]\n" * 5000)

    function.app.steps.steps.s3.meta.events.register("before-call.s3.GetObject", replace_input)

    assert run.run(s3) == "failed"

    assert run.raised == [] and run.rounds == []
    assert read_status(s3, folder).error == (
        f"input.jsonl: expected the object planned (ETag {planned}), got one replaced since; upload it again "
        "as a new job"
    )


def test_two_inputs_in_one_job_folder_fail_the_job_instead_of_sharing_a_plan(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    folder = "jobs/seed-mlp/two/"
    rows = rows_of(100, seed=18)
    jsonl = sharded_run(
        function,
        s3,
        published_seed.version,
        folder,
        "input.jsonl",
        "\n".join(json.dumps(row) for row in rows.tolist()).encode(),
    )
    csv = sharded_run(function, s3, published_seed.version, folder, "input.csv", quoted_csv(rows).encode())
    work = jsonl.invoke({"maas_job_step": "plan", "job": jsonl.job})
    # A shard of the csv job handed the jsonl job's plan refuses it too.
    shard = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key=work["items_key"])["Body"].read())[1]
    answer = csv.invoke({"maas_job_step": "shard", "job": csv.job, "shard": shard})

    assert csv.run(s3) == "failed"
    assert jsonl.run(s3) == "failed"  # the folder's one status says why

    expected = (
        f"job: expected one input in {folder}, got input.jsonl (planned first) and input.csv; upload each "
        "as a job of its own, under its own job id"
    )
    assert read_status(s3, folder).error == expected
    assert answer["outcome"] == "failed"
    failure = s3.get_object(Bucket=TEST_BUCKET, Key=f"{folder}shards/00001-{shard['start']}.failed.json")
    assert json.loads(failure["Body"].read())["error"] == expected
    assert f"{folder}output.jsonl" not in keys_under(s3, folder)


def test_a_pinned_version_that_is_gone_fails_the_job_in_its_plan(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    run = sharded_run(
        function, s3, published_seed.version + 5, "jobs/seed-mlp/many/", "input.jsonl", b"[1]\n" * 10
    )

    assert run.run(s3) == "failed"

    status = read_status(s3, "jobs/seed-mlp/many/")
    assert (
        status.error
        == f"reading the manifest of model 'seed-mlp' version {published_seed.version + 5}: not found"
    )
    assert status.model_version is None


def test_a_merge_that_stops_before_its_status_finishes_the_job_when_run_again(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=11)
    lines[50] = lines[90] = "[]"
    body = "\n".join(lines).encode()
    run_single(function, s3, "jobs/seed-mlp/one/", "input.jsonl", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.jsonl", body)
    failed: list[str] = []

    def fail_status_once(params: dict[str, Any], **_: Any) -> None:
        if params["url_path"].endswith("/many/status.json") and not failed:
            failed.append("status")
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    function.app.steps.steps.s3.meta.events.register("before-call.s3.PutObject", fail_status_once)

    assert run.run(s3) == "succeeded"

    # The output was stitched and the shard outputs (renumbered copies too) deleted before the status
    # failed: the merge run again found them gone and the output there, and wrote the status alone.
    assert run.raised == [("merge", "Unavailable")]
    assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")


def test_rounds_that_never_settle_fail_the_job(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    key = "jobs/seed-mlp/many/input.jsonl"
    submit(s3, key, b"\n".join(json.dumps(row).encode() for row in rows_of(50).tolist()))
    job = job_reference(key, published_seed.version)
    function.lambda_handler({"maas_job_step": "plan", "job": job}, Context())
    shards = len(
        JobPlan.model_validate_json(
            s3.get_object(Bucket=TEST_BUCKET, Key="jobs/seed-mlp/many/shards/plan.json")["Body"].read()
        ).shards
    )

    # No shard ran, and this is already the last round a job may have.
    work = function.lambda_handler({"maas_job_step": "merge", "job": job, "round": shards + 2}, Context())

    assert (work["done"], work["failed"]) == (True, True)
    status = read_status(s3, "jobs/seed-mlp/many/")
    assert status.error == (
        f"job: expected the shards to settle within {shards + 2} rounds, got to round {shards + 3} with "
        f"{shards} shards still to run"
    )


def test_a_renumbering_that_always_fails_fails_the_job_naming_its_shard(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=20)
    lines[60] = "{not json"
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.jsonl", "\n".join(lines).encode())

    def fail_reads_of_outputs(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].startswith(f"{folder}shards/") and params["Key"].endswith(".jsonl"):
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    def install(round_number: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if round_number == 1:  # the renumbering round: its reads of the shard's output fail
            function.app.steps.steps.s3.meta.events.register(
                "provide-client-params.s3.GetObject", fail_reads_of_outputs
            )
        return items

    run.before_round = install

    assert run.run(s3) == "failed"

    assert len(run.rounds) == 2 and [item["renumber_from"] for item in run.rounds[1]] != []
    (task,) = run.rounds[1]
    assert run.raised == [("shard", "Unavailable")] * 4
    error = read_status(s3, folder).error
    assert error is not None and error.startswith(
        f"job: shard {task['index']} (input bytes {task['start']}-{task['end']}) failed while its error "
        f"lines were renumbered: Unavailable: reading the shard output s3://{TEST_BUCKET}/{folder}shards/"
    )


def test_a_shard_output_changed_under_the_merge_fails_the_job_saying_so(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(60, seed=21)
    folder = "jobs/seed-mlp/many/"
    run = sharded_run(function, s3, published_seed.version, folder, "input.jsonl", "\n".join(lines).encode())
    shortened: list[str] = []

    def shorten_an_output(params: dict[str, Any], **_: Any) -> None:
        # The merge listed the outputs' sizes, then reads them: one is replaced by fewer bytes meanwhile.
        key = params["Key"]
        if "Range" in params and key.startswith(f"{folder}shards/") and not shortened:
            shortened.append(key)
            s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"{}\n")

    function.app.steps.steps.s3.meta.events.register("provide-client-params.s3.GetObject", shorten_an_output)

    assert run.run(s3) == "failed"

    error = read_status(s3, folder).error
    assert error is not None and error.startswith(
        f"job: expected each shard output to hold the bytes listed, got another size (s3://{TEST_BUCKET}/"
        f"{shortened[0]}: expected "
    )
    assert error.endswith(
        "something else wrote under the job's shards/ folder while it ran; upload the input again as a new "
        "job"
    )
    assert f"{folder}output.jsonl" not in keys_under(s3, folder)


def test_a_failed_step_fails_the_job_once_saying_which_and_why(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    key = "jobs/seed-mlp/many/input.jsonl"
    submit(s3, key, b"[1]\n" * 1000)
    failure = {
        "Error": "Sandbox.Timedout",
        "Cause": json.dumps({"errorMessage": "Task timed out after 900.00 seconds", "errorType": "Timeout"}),
    }
    step = {"maas_job_step": "fail", "job": job_reference(key, published_seed.version), "failure": failure}

    function.lambda_handler(step, Context())
    written = stored_versions(s3, "jobs/seed-mlp/many/")
    function.lambda_handler(step | {"failure": {"Error": "Other", "Cause": "later"}}, Context())

    status = read_status(s3, "jobs/seed-mlp/many/")
    assert status.error == (
        "job: the jobs state machine failed while planning: Sandbox.Timedout: "
        "Task timed out after 900.00 seconds"
    )
    assert stored_versions(s3, "jobs/seed-mlp/many/") == written


# ---- idempotence


def test_every_step_invoked_twice_writes_each_object_once(
    function: ModuleType, s3: Any, published_seed: Manifest
) -> None:
    lines, _ = jsonl_body(100, seed=8)
    lines[10] = lines[60] = lines[95] = "nope"
    body = "\n".join(lines).encode()
    run_single(function, s3, "jobs/seed-mlp/one/", "input.jsonl", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.jsonl", body)

    assert run.run(s3, duplicate_steps=True) == "succeeded"
    written = stored_versions(s3, "jobs/seed-mlp/many/")
    # And once more, late, each step of the whole run as it was sent: nothing changes.
    for payload in list(run.sent):
        run.invoke(payload)

    assert stored_versions(s3, "jobs/seed-mlp/many/") == written
    assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")


def test_a_restarted_plan_reuses_its_plan(function: ModuleType, s3: Any, published_seed: Manifest) -> None:
    key = "jobs/seed-mlp/many/input.jsonl"
    submit(s3, key, b"\n".join(json.dumps(row).encode() for row in rows_of(50).tolist()))
    plan = {"maas_job_step": "plan", "job": job_reference(key, published_seed.version)}

    first = function.lambda_handler(plan, Context())
    written = stored_versions(s3, "jobs/seed-mlp/")
    second = function.lambda_handler(plan, Context())

    assert (
        first
        == second
        == {
            "done": False,
            "failed": False,
            "bucket": TEST_BUCKET,
            "items_key": "jobs/seed-mlp/many/shards/round-0.json",
            "round": 0,
        }
    )
    assert stored_versions(s3, "jobs/seed-mlp/") == written


# ---- payloads


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"maas_job_step": "explode"},
            "maas_job_step: expected one of ['plan', 'shard', 'shard_failed', 'merge', 'fail'], "
            "got 'explode'",
        ),
        ({"maas_job_step": "plan"}, "maas_job_step plan: expected a valid payload, got job: Field required"),
        (
            {
                "maas_job_step": "merge",
                "job": {"input_key": "jobs/seed-mlp/j/input.jsonl", "model_version": 1},
            },
            "maas_job_step merge: expected a valid payload, got round: Field required",
        ),
        (
            {
                "maas_job_step": "shard",
                "job": {"input_key": "jobs/seed-mlp/j/input.jsonl", "model_version": 1},
                "shard": {"index": 0, "start": 0},
            },
            "maas_job_step shard: expected a valid payload, got shard.end: Field required",
        ),
        (
            {"maas_job_step": "plan", "job": {"input_key": "elsewhere/input.jsonl", "model_version": 1}},
            "job key: expected it under jobs/",
        ),
    ],
)
def test_a_payload_that_is_no_step_is_refused_naming_what_is_wrong(
    function: ModuleType, payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        function.lambda_handler(payload, Context())
    assert raised.value.message.startswith(message)


# ---- the start


@pytest.fixture
def state_machine(s3: Any) -> str:
    import boto3

    client = boto3.client("stepfunctions", region_name="us-east-1")
    return str(
        client.create_state_machine(
            name="maas-test-jobs",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/maas-test-jobs",
        )["stateMachineArn"]
    )


def executions(state_machine: str) -> list[dict[str, Any]]:
    import boto3

    client = boto3.client("stepfunctions", region_name="us-east-1")
    listed = client.list_executions(stateMachineArn=state_machine)["executions"]
    return [client.describe_execution(executionArn=item["executionArn"]) for item in listed]


def test_a_large_job_starts_one_execution_however_often_its_event_comes_and_a_small_one_runs_at_once(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest, state_machine: str
) -> None:
    function = start_function(
        monkeypatch,
        "batch",
        MAAS_JOB_SHARD_BYTES=str(SHARD_BYTES),
        MAAS_JOB_STATE_MACHINE_ARN=state_machine,
        MAAS_JOB_SHARD_CONCURRENCY="7",
    )
    large, small = "jobs/seed-mlp@latest/big.1/input.jsonl", "jobs/seed-mlp/small/input.jsonl"
    rows = [json.dumps(row).encode() for row in rows_of(30).tolist()]
    submit(s3, large, b"\n".join(rows))
    submit(s3, small, b"\n".join(rows[:5]))

    for _ in range(3):
        assert function.lambda_handler(job_event(large), Context()) == {"batchItemFailures": []}
    function.lambda_handler(job_event(small), Context())

    (started,) = executions(state_machine)
    assert started["name"] == execution_name("big.1", large) and started["name"].startswith("big1-")
    assert json.loads(started["input"]) == {
        "job": {"input_key": large, "model_version": published_seed.version},
        "concurrency": 7,
    }
    assert keys_under(s3, "jobs/seed-mlp@latest/big.1/") == [large]  # nothing run here
    assert read_status(s3, "jobs/seed-mlp/small/").state == "succeeded"


# ---- large outputs


def test_shard_outputs_of_5_mib_and_more_are_stitched_server_side(
    monkeypatch: pytest.MonkeyPatch, s3: Any, published_seed: Manifest
) -> None:
    shard_rows = 160 * 512  # shards are whole batches of MAAS_JOB_BATCH_ROWS
    rows = rows_of(3 * shard_rows, seed=9)
    body = npy_bytes(rows)
    function = start_function(monkeypatch, "batch", MAAS_JOB_SHARD_BYTES=str(shard_rows * rows.itemsize * 10))
    copies: list[str] = []
    function.app.steps.steps.s3.meta.events.register(
        "before-call.s3.UploadPartCopy", lambda **_: copies.append("copied")
    )
    run_single(function, s3, "jobs/seed-mlp/one/", "input.npy", body)
    run = sharded_run(function, s3, published_seed.version, "jobs/seed-mlp/many/", "input.npy", body)

    assert run.run(s3) == "succeeded"

    _, many = assert_same_job(s3, "jobs/seed-mlp/one/", "jobs/seed-mlp/many/")
    assert many.shards is not None and len(many.shards) == 3
    assert many.shards is not None and min(shard.lines for shard in many.shards) == shard_rows
    assert len(output_of(s3, "jobs/seed-mlp/many/")) > 3 * 5 * 1024 * 1024
    assert copies  # at least one shard's output went in as a copied part, not through this function
