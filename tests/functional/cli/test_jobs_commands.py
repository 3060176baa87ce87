"""`maas jobs submit` and `maas jobs status` against moto, with a stand-in batch function in a thread."""

from __future__ import annotations

import copy
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from maas.cli import main
from maas.config import Settings
from maas.registry import Manifest
from maas.registry.references import parse_ref
from maas.service.job_layout import JobCounts, JobLocation, JobStatus, LineError
from tests.support.aws import TEST_BUCKET
from tests.support.cli import fail

LINES = b'{"inputs": {"input": [1.0, 2.0]}}\n{"inputs": {"input": [3.0, 4.0]}}\n'
OUTPUT = b'{"outputs": {"output": [0.5]}}\n{"error": "input \'input\': expected shape [-1, 10]"}\n'
FAST = ("--poll", "0.01")
# A guard so a broken test fails instead of hanging; no test depends on how long anything takes.
WORKER_PATIENCE_SECONDS = 30.0


@pytest.fixture
def bucket(s3: Any, cli_env: None) -> Any:
    """The moto bucket the CLI submits to."""
    return s3


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_bytes(LINES)
    return path


def keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=TEST_BUCKET).get("Contents", [])]


def body(s3: Any, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read()
    return data


def job_status(
    location: JobLocation,
    state: str,
    *,
    lines: int = 0,
    failed: int = 0,
    error: str | None = None,
    errors: tuple[LineError, ...] = (),
) -> JobStatus:
    """A status.json document as the batch function writes it once a job is over."""
    now = datetime.now(UTC)
    succeeded = state == "succeeded"
    return JobStatus.model_validate(
        {
            "job_id": location.job_id,
            "model": str(location.model),
            "model_name": location.model.name,
            "model_version": 3 if succeeded else None,
            "state": state,
            "error": error,
            "input_key": location.input_key,
            "input_format": location.input_format,
            "output_key": location.output_key if succeeded else None,
            "counts": JobCounts(lines=lines, succeeded=lines - failed, failed=failed),
            "errors": list(errors),
            "started_at": now,
            "finished_at": now,
            "seconds": 1.5,
        }
    )


def store_job(
    s3: Any,
    location: JobLocation,
    status: JobStatus | None,
    output: bytes | None = None,
    *,
    input_stored: bool = False,
) -> None:
    if not input_stored:
        s3.put_object(Bucket=TEST_BUCKET, Key=location.input_key, Body=LINES)
    if output is not None:
        s3.put_object(Bucket=TEST_BUCKET, Key=location.output_key, Body=output)
    if status is not None:
        s3.put_object(Bucket=TEST_BUCKET, Key=location.status_key, Body=status.model_dump_json())


def succeeded(location: JobLocation) -> JobStatus:
    error = LineError(line=2, error="input 'input': expected shape [-1, 10]")
    return job_status(location, "succeeded", lines=2, failed=1, errors=(error,))


class OnUpload(threading.Thread):
    """Waits for a job's input to land in the bucket, then hands its key to `react`, as S3 notifies."""

    def __init__(self, s3: Any, react: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.s3 = s3
        self.react = react
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + WORKER_PATIENCE_SECONDS
            while time.monotonic() < deadline:
                inputs = [key for key in keys(self.s3) if "/input." in key]
                if inputs:
                    # No status.json yet, or the CLI could have read a job that was never pending.
                    assert not any(key.endswith("status.json") for key in keys(self.s3))
                    self.react(inputs[0])
                    return
                time.sleep(0.005)
            raise AssertionError("no job input was uploaded")
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def on_upload(bucket: Any) -> Iterator[Callable[[Callable[[str], None]], OnUpload]]:
    workers: list[OnUpload] = []

    def start(react: Callable[[str], None]) -> OnUpload:
        worker = OnUpload(bucket, react)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.join(WORKER_PATIENCE_SECONDS)
        assert worker.error is None, worker.error


@pytest.fixture
def start_worker(bucket: Any, on_upload: Any) -> Callable[..., OnUpload]:
    """A stand-in batch function: it writes output.jsonl (if given) and then status.json."""

    def start(finish: Callable[[JobLocation], JobStatus], output: bytes | None = None) -> OnUpload:
        def react(input_key: str) -> None:
            job = JobLocation.from_input_key(input_key, Settings.from_env().prefix)
            store_job(bucket, job, finish(job), output, input_stored=True)

        worker: OnUpload = on_upload(react)
        return worker

    return start


# ---- submit --no-wait


@pytest.mark.parametrize(
    ("model", "prefix", "folder"),
    [
        ("demo", "", "jobs/demo/"),
        ("demo@staging", "team-a/", "team-a/jobs/demo@staging/"),
        ("demo/versions/3", "", "jobs/demo/versions/3/"),
        # The path form of an alias is stored in its canonical spelling, the one submit prints.
        ("demo/versions/staging", "", "jobs/demo@staging/"),
    ],
)
def test_submit_no_wait_uploads_the_file_to_the_job_key_and_prints_the_path(
    bucket: Any,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    prefix: str,
    folder: str,
) -> None:
    monkeypatch.setenv("MAAS_PREFIX", prefix)

    code = main(["jobs", "submit", str(data), "--model", model, "--job-id", "job-1", "--no-wait"])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    expected_path = folder.removeprefix(prefix).removeprefix("jobs/") + "job-1"
    assert captured.out == expected_path + "\n"
    assert keys(bucket) == [f"{folder}job-1/input.jsonl"]
    assert body(bucket, f"{folder}job-1/input.jsonl") == LINES


def test_submit_without_a_job_id_makes_a_fresh_one_each_time(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for _ in range(2):
        assert main(["jobs", "submit", str(data), "--model", "demo", "--no-wait"]) == 0
        paths.append(capsys.readouterr().out.strip())

    assert paths[0] != paths[1]
    for path in paths:
        name, job_id = path.split("/")
        assert name == "demo"
        assert len(job_id) == 32 and int(job_id, 16) >= 0
    assert sorted(keys(bucket)) == sorted(f"jobs/{path}/input.jsonl" for path in paths)


@pytest.mark.parametrize(("file_name", "key_name"), [("rows.csv", "input.csv"), ("x.NPY", "input.npy")])
def test_submit_takes_the_format_from_the_extension_and_uploads_big_files_in_parts(
    bucket: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], file_name: str, key_name: str
) -> None:
    # Past the 8 MiB multipart threshold: two parts, the last one short.
    content = bytes(range(256)) * (9 * 1024 * 4)
    source = tmp_path / file_name
    source.write_bytes(content)

    assert main(["jobs", "submit", str(source), "--model", "demo", "--job-id", "big", "--no-wait"]) == 0

    assert capsys.readouterr().out == "demo/big\n"
    assert body(bucket, f"jobs/demo/big/{key_name}") == content
    etag = bucket.head_object(Bucket=TEST_BUCKET, Key=f"jobs/demo/big/{key_name}")["ETag"]
    assert etag.strip('"').endswith("-2")


def test_submit_no_wait_json_is_one_document_with_the_job(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "j", "--no-wait", "--json"])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["job"] == "demo/j"
    assert document["state"] == "pending"
    assert document["input_key"] == "jobs/demo/j/input.jsonl"
    assert document["input_bytes"] == len(LINES)
    assert "demo/j" in captured.err


# ---- submit: refusals, before anything is uploaded


@pytest.mark.parametrize("existing", ["input.csv", "status.json", "output.jsonl"])
def test_submit_refuses_a_job_id_that_was_used(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str], existing: str
) -> None:
    bucket.put_object(Bucket=TEST_BUCKET, Key=f"jobs/demo/used/{existing}", Body=b"old")

    message = fail(capsys, "jobs", "submit", str(data), "--model", "demo", "--job-id", "used", "--no-wait")

    assert "already used by job demo/used" in message
    assert existing in message
    assert "single-use" in message
    assert keys(bucket) == [f"jobs/demo/used/{existing}"]


def test_submit_accepts_an_id_used_under_another_model(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket.put_object(Bucket=TEST_BUCKET, Key="jobs/other/same/input.jsonl", Body=b"old")

    assert main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "same", "--no-wait"]) == 0

    assert capsys.readouterr().out == "demo/same\n"


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("data.txt", "got '.txt' ('data.txt')"),
        ("data.json", "got '.json'"),
        ("data", "got no extension"),
    ],
)
def test_submit_refuses_an_unknown_extension(
    bucket: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], file_name: str, expected: str
) -> None:
    source = tmp_path / file_name
    source.write_bytes(LINES)

    message = fail(capsys, "jobs", "submit", str(source), "--model", "demo", "--no-wait")

    assert "expected one of .jsonl, .csv, .npy" in message
    assert expected in message
    assert keys(bucket) == []


@pytest.mark.parametrize(
    ("flag", "metadata"),
    [(["--csv-header"], {"csv-header": "true"}), (["--no-csv-header"], {"csv-header": "false"}), ([], {})],
)
def test_submit_declares_a_csv_header_or_its_absence_in_the_input_objects_metadata(
    bucket: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str], metadata: dict[str, str]
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("a,b\n1,2\n")

    assert main(["jobs", "submit", str(source), "--model", "demo", "--job-id", "c", "--no-wait", *flag]) == 0

    assert capsys.readouterr().out == "demo/c\n"
    assert bucket.head_object(Bucket=TEST_BUCKET, Key="jobs/demo/c/input.csv")["Metadata"] == metadata


@pytest.mark.parametrize("flag", ["--csv-header", "--no-csv-header"])
def test_submit_refuses_a_csv_header_flag_for_other_formats(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    message = fail(capsys, "jobs", "submit", str(data), "--model", "demo", flag, "--no-wait")

    assert f"{flag}: expected only with a .csv FILE, got a .jsonl one" in message
    assert keys(bucket) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "Bad Name"], "model name: expected"),
        (["--model", "demo@"], "expected an alias after '@'"),
        (["--model", "demo/v/1"], "model reference: expected"),
        (["--model", "demo", "--job-id", "../escape"], "--job-id: expected"),
        (["--model", "demo", "--job-id", "a/b"], "--job-id: expected"),
    ],
)
def test_submit_refuses_a_bad_reference_or_job_id(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    message = fail(capsys, "jobs", "submit", str(data), *argv, "--no-wait")

    assert expected in message
    assert keys(bucket) == []


def test_submit_refuses_a_missing_file_and_an_out_that_is_the_input(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = data.with_name("missing.jsonl")
    assert "no such file" in fail(capsys, "jobs", "submit", str(missing), "--model", "demo")
    same = fail(capsys, "jobs", "submit", str(data), "--model", "demo", "--out", str(data))
    assert "--out: expected a path other than FILE" in same
    assert keys(bucket) == []
    assert data.read_bytes() == LINES


def test_submit_refuses_an_out_in_a_missing_folder(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = data.parent / "missing" / "out.jsonl"

    message = fail(capsys, "jobs", "submit", str(data), "--model", "demo", "--out", str(out))

    assert "--out: expected a path in an existing folder" in message
    assert keys(bucket) == []


@pytest.mark.parametrize("given_out", [False, True])
def test_submit_refuses_an_existing_output_file_before_submitting(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str], given_out: bool
) -> None:
    earlier = data.with_name("data.out.jsonl")
    earlier.write_bytes(b"an earlier job's answers\n")
    out = ["--out", str(earlier)] if given_out else []

    message = fail(capsys, "jobs", "submit", str(data), "--model", "demo", *out)

    assert message.count("\n") == 1
    assert f"got {str(earlier)!r}, which does; nothing was submitted" in message
    assert "name another with --out PATH, or replace it with --overwrite" in message
    assert keys(bucket) == []
    assert earlier.read_bytes() == b"an earlier job's answers\n"


def test_submit_overwrite_replaces_an_existing_output_file(
    start_worker: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier = data.with_name("data.out.jsonl")
    earlier.write_bytes(b"an earlier job's answers\n")
    start_worker(succeeded, OUTPUT)

    assert main(["jobs", "submit", str(data), "--model", "demo", "--overwrite", *FAST]) == 0

    assert earlier.read_bytes() == OUTPUT
    capsys.readouterr()


def test_submit_keeps_an_output_file_that_appears_while_the_job_runs(
    bucket: Any, on_upload: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = data.with_name("data.out.jsonl")

    def another_writer_then_the_job(input_key: str) -> None:
        out.write_bytes(b"written meanwhile\n")
        job = JobLocation.from_input_key(input_key, Settings.from_env().prefix)
        store_job(bucket, job, succeeded(job), OUTPUT, input_stored=True)

    on_upload(another_writer_then_the_job)

    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "j", *FAST])

    captured = capsys.readouterr()
    assert code == 1
    assert out.read_bytes() == b"written meanwhile\n"
    assert "the output stays at s3://" in captured.err and "--overwrite" in captured.err


def test_submit_overwrite_needs_waiting(bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = fail(capsys, "jobs", "submit", str(data), "--model", "demo", "--no-wait", "--overwrite")

    assert "--overwrite: expected only when waiting" in message
    assert keys(bucket) == []


def test_submit_refuses_a_zero_poll_interval(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "submit", str(data), "--model", "demo", "--poll", "0"])

    assert exit_info.value.code == 2
    assert "expected a positive number of seconds" in capsys.readouterr().err


# ---- submit, then wait


def test_submit_waits_downloads_the_output_and_summarises(
    start_worker: Any, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "answers.jsonl"
    out.parent.mkdir()
    start_worker(succeeded, OUTPUT)

    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "j1", "--out", str(out), *FAST])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.read_bytes() == OUTPUT
    lines = captured.out.splitlines()
    assert lines[0] == "demo/j1"
    assert lines[1] == "succeeded: demo v3, 2 lines, 1 failed, 1.5 s"
    assert f"output: {out}" in lines
    assert "  line 2: input 'input': expected shape [-1, 10]" in lines
    assert data.read_bytes() == LINES


def test_submit_downloads_next_to_the_file_by_default(
    start_worker: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_worker(succeeded, OUTPUT)

    assert main(["jobs", "submit", str(data), "--model", "demo", *FAST]) == 0

    assert data.with_name("data.out.jsonl").read_bytes() == OUTPUT
    assert data.read_bytes() == LINES
    capsys.readouterr()


def test_submit_puts_the_output_in_an_out_folder_under_the_default_name(
    start_worker: Any, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    start_worker(succeeded, OUTPUT)

    assert main(["jobs", "submit", str(data), "--model", "demo", "--out", str(folder), *FAST]) == 0

    assert (folder / "data.out.jsonl").read_bytes() == OUTPUT
    assert f"output: {folder / 'data.out.jsonl'}" in capsys.readouterr().out.splitlines()


def test_submit_json_is_the_status_plus_the_output_path(
    start_worker: Any, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    start_worker(succeeded, OUTPUT)

    code = main(
        [
            "jobs",
            "submit",
            str(data),
            "--model",
            "demo@staging",
            "--job-id",
            "j",
            "--out",
            str(out),
            *FAST,
            "--json",
        ]
    )

    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["job"] == "demo@staging/j"
    assert document["state"] == "succeeded"
    assert document["model_version"] == 3
    assert document["counts"] == {"lines": 2, "succeeded": 1, "failed": 1}
    assert document["output_key"] == "jobs/demo@staging/j/output.jsonl"
    assert document["output_path"] == str(out)
    assert out.read_bytes() == OUTPUT


def test_submit_exits_1_and_prints_the_error_when_the_job_fails(
    start_worker: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def model_missing(location: JobLocation) -> JobStatus:
        return job_status(location, "failed", error="model 'demo': not found (no published version)")

    start_worker(model_missing)

    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "j", *FAST])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.splitlines()[:2] == ["demo/j", "failed: demo, 0 lines, 1.5 s"]
    assert "error: job demo/j failed: model 'demo': not found (no published version)" in captured.err
    assert not data.with_name("data.out.jsonl").exists()


def test_submit_json_reports_a_failed_job_and_exits_1(
    start_worker: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_worker(lambda location: job_status(location, "failed", error="input: not JSON lines"))

    code = main(["jobs", "submit", str(data), "--model", "demo", "--json", *FAST])

    captured = capsys.readouterr()
    assert code == 1
    document = json.loads(captured.out)
    assert document["state"] == "failed"
    assert document["error"] == "input: not JSON lines"
    assert document["output_path"] is None


def test_submit_gives_up_waiting_and_says_how_to_follow_the_job(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "slow", "--timeout", "0", *FAST])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == "demo/slow\n"
    assert "still running" in captured.err
    assert "maas jobs status demo/slow" in captured.err
    assert keys(bucket) == ["jobs/demo/slow/input.jsonl"]


# ---- progress bars


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_submit_draws_progress_bars_on_a_terminal(
    start_worker: Any, data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    start_worker(succeeded, OUTPUT)

    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "bars", *FAST])

    assert code == 0, terminal.getvalue()
    drawn = terminal.getvalue()
    assert "upload data.jsonl" in drawn
    assert "download data.out.jsonl" in drawn
    assert capsys.readouterr().out.startswith("demo/bars\n")


def test_submit_works_without_tqdm(
    start_worker: Any, data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    start_worker(succeeded, OUTPUT)

    assert main(["jobs", "submit", str(data), "--model", "demo", *FAST]) == 0

    assert data.with_name("data.out.jsonl").read_bytes() == OUTPUT
    assert terminal.getvalue() == ""
    capsys.readouterr()


# ---- status


def location(path: str, input_format: Any = "jsonl") -> JobLocation:
    return JobLocation.from_path(path, input_format=input_format)


def status_of(capsys: pytest.CaptureFixture[str], job: str, *, expect: int = 0) -> dict[str, Any]:
    code = main(["jobs", "status", job, "--json"])
    captured = capsys.readouterr()
    assert code == expect, captured.err
    document: dict[str, Any] = json.loads(captured.out)
    return document


def test_status_of_a_job_without_status_json_is_pending(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store_job(bucket, location("demo@staging/j", "csv"), None)

    document = status_of(capsys, "demo@staging/j")
    assert document["state"] == "pending"
    assert document["model"] == "demo@staging"
    assert document["input_key"] == "jobs/demo@staging/j/input.csv"

    assert main(["jobs", "status", "demo@staging/j"]) == 0
    text = capsys.readouterr().out
    assert "pending" in text
    assert f"s3://{TEST_BUCKET}/jobs/demo@staging/j/input.csv" in text


def test_status_of_an_unknown_job_is_not_found_and_exits_1(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store_job(bucket, location("demo/other"), None)

    document = status_of(capsys, "demo/nope", expect=1)
    assert document["state"] == "not found"
    assert document["input_key"] is None

    assert main(["jobs", "status", "demo/versions/2/nope"]) == 1
    assert "not found" in capsys.readouterr().out


def test_status_of_a_finished_job_shows_counts_errors_and_output(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job = location("demo/versions/3/done")
    store_job(bucket, job, succeeded(job), OUTPUT)

    document = status_of(capsys, "demo/versions/3/done")
    stored = JobStatus.model_validate_json(body(bucket, job.status_key))
    assert document == {"job": job.path, "bucket": TEST_BUCKET, **stored.model_dump(mode="json")}

    assert main(["jobs", "status", "demo/versions/3/done"]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split(None, 1)[1] for line in text.splitlines() if not line.startswith(" ")}
    assert rows["state"] == "succeeded"
    assert rows["version"] == "3"
    assert rows["lines"] == "2 (1 succeeded, 1 failed)"
    assert rows["output"] == f"s3://{TEST_BUCKET}/jobs/demo/versions/3/done/output.jsonl"
    assert "  line 2: input 'input': expected shape [-1, 10]" in text.splitlines()


@pytest.mark.parametrize(("csv_header", "shown"), [(True, "line 1 (no output line)"), (False, "none")])
def test_status_of_a_csv_job_says_whether_line_1_was_a_header(
    bucket: Any, capsys: pytest.CaptureFixture[str], csv_header: bool, shown: str
) -> None:
    job = JobLocation.from_path("demo/csv-job", input_format="csv")
    store_job(bucket, job, succeeded(job).model_copy(update={"csv_header": csv_header}), OUTPUT)

    assert main(["jobs", "status", "demo/csv-job"]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split(None, 1)[1] for line in text.splitlines() if not line.startswith(" ")}
    assert rows["header"] == shown


def test_status_of_a_failed_job_exits_0_and_shows_why(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job = location("demo/broken")
    store_job(bucket, job, job_status(job, "failed", error="model 'demo': not found"))

    assert main(["jobs", "status", "demo/broken"]) == 0
    text = capsys.readouterr().out
    assert "failed" in text
    assert "model 'demo': not found" in text
    assert status_of(capsys, "demo/broken")["error"] == "model 'demo': not found"


def test_status_refuses_a_status_json_that_is_not_a_job_status(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket.put_object(Bucket=TEST_BUCKET, Key="jobs/demo/odd/status.json", Body=b'{"state": "maybe"}')

    message = fail(capsys, "jobs", "status", "demo/odd")

    assert "expected a job status document" in message


@pytest.mark.parametrize("path", ["demo/j", "demo@staging/j", "demo/versions/2/j", "other/versions/9/j"])
def test_status_finds_a_bare_job_id_under_any_model_folder(
    bucket: Any, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    for decoy in ("demo/decoy", "demo@staging/decoy2", "demo/versions/2/decoy3"):
        store_job(bucket, location(decoy), None)
    job = location(path)
    store_job(bucket, job, succeeded(job), OUTPUT)

    document = status_of(capsys, "j")

    assert document["job"] == path
    assert document["state"] == "succeeded"
    assert document["model"] == str(parse_ref(path.rpartition("/")[0]))


def test_status_of_a_bare_job_id_that_is_ambiguous_or_unknown_is_an_error(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store_job(bucket, location("demo/twice"), None)
    store_job(bucket, location("demo/versions/1/twice"), None)

    ambiguous = fail(capsys, "jobs", "status", "twice")
    assert "demo/twice" in ambiguous
    assert "demo/versions/1/twice" in ambiguous
    assert "<model-ref>/<job-id>" in ambiguous

    assert "not found" in fail(capsys, "jobs", "status", "never")
    assert "job id: expected" in fail(capsys, "jobs", "status", "..")


def test_status_follows_a_job_that_submit_left_running(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jobs", "submit", str(data), "--model", "demo", "--no-wait"]) == 0
    path = capsys.readouterr().out.strip()
    assert status_of(capsys, path)["state"] == "pending"

    job = location(path)
    store_job(bucket, job, succeeded(job), OUTPUT)

    assert status_of(capsys, path.rpartition("/")[2])["state"] == "succeeded"


# ---- end to end, with the real batch function


def test_submit_runs_a_job_through_the_real_batch_function(
    bucket: Any,
    on_upload: Any,
    published_seed: Manifest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.events import load_event
    from tests.support.functions import start_function

    # The function shares this process's stdout here, where its EMF metrics would interleave with --json.
    batch = start_function(monkeypatch, "batch", POWERTOOLS_METRICS_DISABLED="true")
    rows = [[float(i + j) / 10 for j in range(10)] for i in range(3)]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join([json.dumps(rows[0]), "{not json", json.dumps(rows[1]), json.dumps(rows[2])]))

    def deliver(input_key: str) -> None:
        """S3 -> SQS -> Lambda: the notification for the uploaded key, as the SQS body."""
        event = copy.deepcopy(load_event("sqs_s3_job_notification.json"))
        notification = json.loads(event["Records"][0]["body"])
        notification["Records"][0]["s3"]["object"]["key"] = quote_plus(input_key, safe="/")
        event["Records"][0]["body"] = json.dumps(notification)
        assert batch.lambda_handler(event, None) == {"batchItemFailures": []}

    on_upload(deliver)

    code = main(["jobs", "submit", str(source), "--model", "seed-mlp@latest", "--json", *FAST])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["state"] == "succeeded"
    assert document["model_version"] == published_seed.version
    assert document["counts"] == {"lines": 4, "succeeded": 3, "failed": 1}
    assert [error["line"] for error in document["errors"]] == [2]
    lines = [json.loads(line) for line in (tmp_path / "rows.out.jsonl").read_text().splitlines()]
    assert [sorted(line) for line in lines] == [["outputs"], ["error"], ["outputs"], ["outputs"]]
    assert all(len(line["outputs"]["output"]) == 10 for line in lines if "outputs" in line)

    assert main(["jobs", "status", document["job"].rpartition("/")[2]]) == 0
    assert "succeeded" in capsys.readouterr().out
