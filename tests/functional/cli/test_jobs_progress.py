"""A sharded job's progress in `maas jobs submit` and `maas jobs status`, against moto.

Each test leaves in the bucket what the plan and shard steps would (maas.service.shard_layout): plan.json,
`.started` markers, results and failures. No job runs; the documents are the contract.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maas.cli import job_bucket, main
from maas.cli.job_progress import ProgressLine, ShardProgress, ShardWatch
from maas.errors import MaasError
from maas.service.job_layout import JobLocation
from tests.support.aws import TEST_BUCKET

LINES = b'{"inputs": {"input": [1.0, 2.0]}}\n{"inputs": {"input": [3.0, 4.0]}}\n'
PLANNED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
WORKER_PATIENCE_SECONDS = 30.0


@pytest.fixture
def bucket(s3: Any, cli_env: None) -> Any:
    return s3


class ShardedJob:
    """A job folder as the steps leave it, written one object at a time."""

    def __init__(self, s3: Any, path: str = "demo/big", *, bounds: tuple[int, ...] = (0, 100, 200, 300, 400)):
        self.s3 = s3
        self.location = JobLocation.from_path(path)
        self.bounds = bounds
        self.shards = len(bounds) - 1

    def key(self, name: str) -> str:
        return f"{self.location.folder}shards/{name}"

    def put(self, key: str, document: Any = None) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=body)

    def upload_input(self) -> None:
        self.s3.put_object(Bucket=TEST_BUCKET, Key=self.location.input_key, Body=LINES)

    def plan(self, created_at: datetime = PLANNED_AT) -> None:
        tasks = [
            {"index": i, "start": start, "end": end, "first_row": 1, "renumber_from": None}
            for i, (start, end) in enumerate(zip(self.bounds, self.bounds[1:], strict=False))
        ]
        self.put(
            self.key("plan.json"),
            {
                "job_id": self.location.job_id,
                "input_key": self.location.input_key,
                "input_format": "jsonl",
                "input_bytes": self.bounds[-1],
                "model_name": "demo",
                "model_version": 3,
                "generates_text": False,
                "shard_bytes": 100,
                "shards": tasks,
                "csv_header": None,
                "npy_data_offset": None,
                "npy_row_bytes": None,
                "npy_rows": None,
                "created_at": created_at.isoformat(),
            },
        )
        self.put(self.key("round-0.json"), tasks)

    def started(self, index: int, start: int | None = None) -> None:
        self.put(self.key(f"{index:05d}-{self._start(index, start)}.started"))

    def done(
        self, index: int, lines: int, *, finished_at: datetime, start: int | None = None, failed: int = 0
    ) -> None:
        start = self._start(index, start)
        stem = f"{index:05d}-{start}"
        self.put(self.key(f"{stem}.jsonl"))
        self.put(
            self.key(f"{stem}.json"),
            {
                "index": index,
                "start": start,
                "end": self.bounds[index + 1],
                "lines": lines,
                "counts": {"lines": lines, "succeeded": lines - failed, "failed": failed},
                "errors": [{"line": 1, "error": "input 'input': expected shape [-1, 10]"}] if failed else [],
                "error_lines": failed,
                "output_key": self.key(f"{stem}.jsonl"),
                "output_bytes": 10 * lines,
                "csv_header": None,
                "tokens": None,
                "started_at": (finished_at - timedelta(seconds=2)).isoformat(),
                "finished_at": finished_at.isoformat(),
                "seconds": 2.0,
            },
        )

    def failed(self, index: int) -> None:
        start = self._start(index, None)
        self.put(
            self.key(f"{index:05d}-{start}.failed.json"),
            {
                "index": index,
                "start": start,
                "end": self.bounds[index + 1],
                "error_type": "InvalidInput",
                "error": "line 3: not JSON",
                "failed_at": PLANNED_AT.isoformat(),
            },
        )

    def status(self, shards: list[dict[str, Any]] | None) -> None:
        lines = sum(shard["lines"] for shard in shards or [])
        self.s3.put_object(Bucket=TEST_BUCKET, Key=self.location.output_key, Body=b"{}\n" * lines)
        self.put(
            self.location.status_key,
            {
                "job_id": self.location.job_id,
                "model": str(self.location.model),
                "model_name": "demo",
                "model_version": 3,
                "state": "succeeded",
                "input_key": self.location.input_key,
                "input_format": "jsonl",
                "output_key": self.location.output_key,
                "counts": {"lines": lines, "succeeded": lines, "failed": 0},
                "started_at": PLANNED_AT.isoformat(),
                "finished_at": (PLANNED_AT + timedelta(seconds=30)).isoformat(),
                "seconds": 30.0,
                "shards": shards,
            },
        )

    def _start(self, index: int, start: int | None) -> int:
        return self.bounds[index] if start is None else start


def at(seconds: float) -> datetime:
    return PLANNED_AT + timedelta(seconds=seconds)


def watch(job: ShardedJob, bucket: Any, *, now: datetime) -> ShardWatch:
    return ShardWatch(bucket, TEST_BUCKET, job.location, now=lambda: now)


@pytest.fixture
def gets(bucket: Any) -> Iterator[list[str]]:
    """The keys read by GetObject, through botocore's own event hooks on the test's client."""
    read: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        read.append(params["Key"])

    bucket.meta.events.register("before-parameter-build.s3.GetObject", record)
    yield read
    bucket.meta.events.unregister("before-parameter-build.s3.GetObject", record)


# ---- counting


def test_a_job_without_a_plan_has_no_shard_progress(bucket: Any) -> None:
    job = ShardedJob(bucket)
    job.upload_input()

    assert watch(job, bucket, now=at(5)).poll() is None


def test_shards_are_done_running_failed_or_waiting_and_rows_count_from_the_plan(bucket: Any) -> None:
    job = ShardedJob(bucket)
    job.plan()
    job.started(0)
    job.done(0, 3_000, finished_at=at(4))
    job.started(1)
    job.done(1, 2_000, finished_at=at(6))
    job.started(2)
    job.started(3)
    job.failed(3)

    progress = watch(job, bucket, now=at(10)).poll()

    assert progress == ShardProgress(shards=4, done=2, running=1, failed=1, rows=5_000, seconds=10.0)
    assert progress.waiting == 0
    assert progress.describe() == "2/4 shards done, 1 running, 1 failed, 500 rows/s"


def test_a_shard_whose_error_lines_could_not_be_renumbered_counts_as_failed(bucket: Any) -> None:
    # Given shard 1 answered (a result), but its renumbering failed for good: the merge fails the job
    job = ShardedJob(bucket)
    job.plan()
    job.done(0, 3_000, finished_at=at(4))
    job.done(1, 2_000, finished_at=at(6), failed=5)
    job.put(job.key(f"00001-{job.bounds[1]}.from-3001.failed.json"))

    progress = watch(job, bucket, now=at(10)).poll()

    assert progress is not None
    assert (progress.done, progress.failed) == (1, 1)


def test_a_shard_without_any_object_is_waiting(bucket: Any) -> None:
    job = ShardedJob(bucket)
    job.plan()
    job.started(0)

    progress = watch(job, bucket, now=at(1)).poll()

    assert progress is not None
    assert (progress.done, progress.running, progress.failed, progress.waiting) == (0, 1, 0, 3)
    assert progress.describe() == "0/4 shards done, 1 running, 0 failed, 0 rows/s"


def test_a_shard_rerun_from_its_true_start_counts_as_its_new_run(bucket: Any) -> None:
    """A csv cut that was not a record boundary: shard 1 runs again from where shard 0 really ended. Its
    first result is history: not done, and its lines are not counted."""
    job = ShardedJob(bucket)
    job.plan()
    job.done(0, 10, finished_at=at(1), start=0)
    job.done(1, 7, finished_at=at(1), start=100)
    job.started(1, start=112)

    progress = watch(job, bucket, now=at(2)).poll()

    assert progress is not None
    assert (progress.done, progress.running, progress.rows) == (1, 1, 10)


def test_each_result_is_read_once_however_often_the_job_is_polled(bucket: Any, gets: list[str]) -> None:
    job = ShardedJob(bucket)
    job.plan()
    job.done(0, 10, finished_at=at(1))
    following = watch(job, bucket, now=at(2))

    following.poll()
    following.poll()
    job.done(1, 20, finished_at=at(2))
    progress = following.poll()

    assert progress is not None
    assert progress.rows == 30
    names = [key.rpartition("/")[2] for key in gets]
    assert names == ["plan.json", "00000-0.json", "00001-100.json"]
    assert sum(key.endswith("plan.json") for key in gets) == 1


def test_when_every_shard_is_done_the_rate_stops_at_the_last_finish(bucket: Any) -> None:
    job = ShardedJob(bucket, bounds=(0, 100, 200))
    job.plan()
    job.done(0, 400, finished_at=at(2))
    job.done(1, 400, finished_at=at(4))

    progress = watch(job, bucket, now=at(60)).poll()

    assert progress is not None
    assert progress.seconds == 4.0
    assert progress.describe() == "2/2 shards done, 0 running, 0 failed, 200 rows/s, merging"


def test_a_result_that_is_not_a_shard_result_is_an_error_naming_it(bucket: Any) -> None:
    job = ShardedJob(bucket)
    job.plan()
    job.put(job.key("00000-0.json"), {"index": 0})

    with pytest.raises(MaasError, match=r"shards/00000-0\.json: expected a ShardResult document"):
        watch(job, bucket, now=at(1)).poll()


# ---- the line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress(done: int, running: int = 0, failed: int = 0, rows: int = 0) -> ShardProgress:
    return ShardProgress(shards=40, done=done, running=running, failed=failed, rows=rows, seconds=2.0)


def test_on_a_terminal_the_line_is_rewritten_in_place_when_it_changes() -> None:
    terminal = Terminal()
    line = ProgressLine(terminal, "job m/abc")

    line.show(progress(12, 4, rows=104_620))
    line.show(progress(12, 4, rows=104_620))
    line.show(progress(13, 3, rows=110_000))
    line.close()

    assert terminal.getvalue() == (
        "\rjob m/abc: 12/40 shards done, 4 running, 0 failed, 52,310 rows/s\x1b[K"
        "\rjob m/abc: 13/40 shards done, 3 running, 0 failed, 55,000 rows/s\x1b[K"
        "\n"
    )


def test_in_a_log_a_line_is_printed_when_the_counts_change_at_most_every_few_seconds() -> None:
    log = io.StringIO()
    clock = [0.0]
    line = ProgressLine(log, "job m/abc", every=5.0, clock=lambda: clock[0])

    line.show(progress(0, 4))
    line.show(progress(0, 4, rows=10))  # only the rate changed: nothing printed
    clock[0] = 1.0
    line.show(progress(1, 4, rows=20))  # too soon: held
    clock[0] = 6.0
    line.show(progress(2, 4, rows=40))
    clock[0] = 7.0
    line.show(progress(3, 4, rows=60))  # too soon: held, and printed at close
    line.close()

    assert log.getvalue().splitlines() == [
        "job m/abc: 0/40 shards done, 4 running, 0 failed, 0 rows/s",
        "job m/abc: 2/40 shards done, 4 running, 0 failed, 20 rows/s",
        "job m/abc: 3/40 shards done, 4 running, 0 failed, 30 rows/s",
    ]


# ---- maas jobs status


def status_json(capsys: pytest.CaptureFixture[str], job: str) -> dict[str, Any]:
    code = main(["jobs", "status", job, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document: dict[str, Any] = json.loads(captured.out)
    return document


def test_status_of_a_sharded_job_that_runs_shows_its_shards(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job = ShardedJob(bucket)
    job.upload_input()
    job.plan(created_at=datetime.now(UTC) - timedelta(seconds=5))
    job.done(0, 3_000, finished_at=datetime.now(UTC))
    job.started(1)
    job.failed(2)

    document = status_json(capsys, "demo/big")
    assert document["state"] == "running"
    assert document["input_key"] == "jobs/demo/big/input.jsonl"
    rate = document["progress"].pop("rows_per_second")
    assert document["progress"] == {
        "shards": 4,
        "done": 1,
        "running": 1,
        "failed": 1,
        "waiting": 1,
        "rows": 3_000,
    }
    assert 0 < rate <= 3_000 / 5

    assert main(["jobs", "status", "big"]) == 0
    text = capsys.readouterr().out
    assert "running" in text
    assert "1/4 done, 1 running, 1 failed, 1 waiting" in text
    assert "3,000 so far" in text


def test_status_of_a_job_without_a_plan_is_still_pending(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ShardedJob(bucket).upload_input()

    document = status_json(capsys, "demo/big")

    assert document["state"] == "pending"
    assert "progress" not in document


def test_status_of_a_finished_sharded_job_shows_its_shards_and_the_slowest(
    bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job = ShardedJob(bucket, bounds=(0, 100, 200, 300))
    job.upload_input()
    job.plan()
    summaries = [
        {"index": i, "start": s, "end": s + 100, "lines": 10, "succeeded": 10, "failed": 0, "seconds": t}
        for i, (s, t) in enumerate([(0, 3.0), (100, 12.25), (200, 4.0)])
    ]
    job.status(summaries)

    document = status_json(capsys, "demo/big")
    assert document["state"] == "succeeded"
    assert document["shards"] == summaries
    assert "progress" not in document

    assert main(["jobs", "status", "demo/big"]) == 0
    text = capsys.readouterr().out
    assert "3, slowest 12.2 s (shard 1)" in text


# ---- maas jobs submit


class Steps(threading.Thread):
    """Stands in for the state machine once the input lands: the plan, two shards, then the status."""

    def __init__(self, s3: Any, path: str) -> None:
        super().__init__(daemon=True)
        self.job = ShardedJob(s3, path, bounds=(0, 40, 80))
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            job = self.job
            deadline = time.monotonic() + WORKER_PATIENCE_SECONDS
            while not job.s3.list_objects_v2(Bucket=TEST_BUCKET, Prefix=job.location.input_key).get(
                "Contents"
            ):
                if time.monotonic() > deadline:
                    raise AssertionError("no job input was uploaded")
                time.sleep(0.005)
            job.plan(created_at=datetime.now(UTC))
            for index in (0, 1):
                job.started(index)
                time.sleep(0.05)
                job.done(index, 1, finished_at=datetime.now(UTC))
                time.sleep(0.05)
            job.status(
                [
                    {"index": i, "start": 40 * i, "end": 40 * i + 40, "lines": 1, "succeeded": 1, "failed": 0}
                    | {"seconds": 0.05}
                    for i in (0, 1)
                ]
            )
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def steps(bucket: Any) -> Iterator[Steps]:
    worker = Steps(bucket, "demo/big")
    worker.start()
    yield worker
    worker.join(WORKER_PATIENCE_SECONDS)
    assert worker.error is None, worker.error


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_bytes(LINES)
    return path


def test_submit_prints_shard_progress_on_stderr_while_it_waits(
    steps: Steps, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "big", "--poll", "0.01"])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    progress_lines = captured.err.splitlines()
    assert progress_lines, "no progress line"
    assert all(line.startswith("job demo/big: ") and "/2 shards done" in line for line in progress_lines)
    assert captured.out.splitlines()[:2] == ["demo/big", "succeeded: demo v3, 2 lines, 30.0 s"]
    assert "shards" not in captured.out


def test_submit_json_keeps_progress_off_stdout(
    steps: Steps, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["jobs", "submit", str(data), "--model", "demo", "--job-id", "big", "--json", "--poll", "0.01"]
    )

    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["state"] == "succeeded"
    assert [shard["index"] for shard in document["shards"]] == [0, 1]
    assert "shards done" in captured.err


def test_submit_of_a_job_without_shards_prints_no_progress(
    bucket: Any, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = ShardedJob(bucket, "demo/small")

    def finish() -> None:
        while not bucket.list_objects_v2(Bucket=TEST_BUCKET, Prefix=job.location.input_key).get("Contents"):
            time.sleep(0.005)
        job.status(None)

    worker = threading.Thread(target=finish, daemon=True)
    worker.start()
    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "small", "--poll", "0.01"])
    worker.join(WORKER_PATIENCE_SECONDS)

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""


# ---- how long submit waits


def test_a_sharded_job_that_shows_no_sign_of_life_is_given_up_after_the_idle_timeout(bucket: Any) -> None:
    job = ShardedJob(bucket)
    job.plan()
    job.started(0)

    with pytest.raises(MaasError, match=r"no shard started or finished in 0\.2 s") as raised:
        job_bucket.wait_for_status(
            bucket, TEST_BUCKET, job.location, timeout=None, idle_timeout=0.2, poll=0.01
        )
    assert "maas jobs status demo/big" in str(raised.value)


def test_a_sharded_job_that_moves_is_followed_past_the_idle_timeout(bucket: Any) -> None:
    job = ShardedJob(bucket, bounds=tuple(range(0, 2_100, 100)))
    job.plan()

    def run_shards() -> None:
        # 20 shards, one every 0.1 s: 2 s in all, each gap far inside the 1 s idle timeout.
        for index in range(job.shards):
            job.started(index)
            time.sleep(0.1)
        job.status(None)

    worker = threading.Thread(target=run_shards, daemon=True)
    worker.start()
    status = job_bucket.wait_for_status(
        bucket, TEST_BUCKET, job.location, timeout=None, idle_timeout=1.0, poll=0.01
    )
    worker.join(WORKER_PATIENCE_SECONDS)

    assert status.state == "succeeded"


def test_submit_on_a_terminal_rewrites_the_progress_line_in_place_of_the_spinner(
    steps: Steps, data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    code = main(["jobs", "submit", str(data), "--model", "demo", "--job-id", "big", "--poll", "0.01"])

    drawn = terminal.getvalue()
    assert code == 0, drawn
    assert "\rjob demo/big: " in drawn
    # The last state drawn stays on its own line, above the download bar.
    progress, _, after = drawn.rpartition("\x1b[K\n")
    assert "/2 shards done" in progress.rpartition("\r")[2]
    assert "download data.out.jsonl" in after
    assert capsys.readouterr().out.startswith("demo/big\n")
