"""A sharded job's progress, read from its `shards/` folder: how many shards are done, running, failed and
waiting, and how many rows a second they answer. Never imports torch.

The plan step writes `shards/plan.json` and each shard leaves a `.started` marker, then its result (or a
failure) under `shards/<index:05d>-<start>` (maas.service.shard_layout). One listing of the folder says
where every shard is; a result document is read once, for its line count, and remembered by key, so
following a job of thousands of shards costs a listing per poll and one GET per shard in all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO, TypeVar

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from pydantic import BaseModel

    from maas.service.job_layout import JobLocation
    from maas.service.shard_layout import JobPlan, ShardKeys

# Result documents read at once; stays under the shared client's connection pool (aws_clients: 32).
READ_CONCURRENCY = 8
# A listing of N pages (1,000 keys each) waits (N - 1) s before the next: a job of ten thousand shards is
# not listed forty times a second, and a small one is listed on every poll.
LISTING_SECONDS_PER_EXTRA_PAGE = 1.0
# Without a terminal (a log, CI), a changed line is printed at most this often.
LOG_LINE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """Where a sharded job's shards are. `rows` counts the input lines (npy rows) of the done shards."""

    shards: int
    done: int
    running: int
    failed: int
    rows: int
    seconds: float

    @property
    def waiting(self) -> int:
        return self.shards - self.done - self.running - self.failed

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def counts(self) -> tuple[int, int, int]:
        return (self.done, self.running, self.failed)

    def describe(self) -> str:
        """`12/40 shards done, 4 running, 0 failed, 52,310 rows/s`."""
        text = (
            f"{self.done}/{self.shards} shards done, {self.running} running, {self.failed} failed, "
            f"{self.rows_per_second:,.0f} rows/s"
        )
        if self.done == self.shards:
            text += ", merging"
        return text

    def as_json(self) -> dict[str, int | float]:
        return {
            "shards": self.shards,
            "done": self.done,
            "running": self.running,
            "failed": self.failed,
            "waiting": self.waiting,
            "rows": self.rows,
            "rows_per_second": round(self.rows_per_second, 1),
        }


@dataclass(frozen=True, slots=True)
class _Done:
    """What progress needs of a ShardResult: not the whole document, which can carry 20 error messages."""

    lines: int
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class _Listed:
    """The counts one listing found; `last_finish` is set once every shard is done."""

    done: int
    running: int
    failed: int
    rows: int
    last_finish: datetime | None


class ShardWatch:
    """Follows one job's `shards/` folder. `poll()` is None until the job has a plan (a job small enough for
    one invocation never has one)."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        location: JobLocation,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        from maas.service.shard_layout import ShardKeys

        self._s3 = s3
        self._bucket = bucket
        self._keys: ShardKeys = ShardKeys.for_job(location)
        self._clock = clock
        self._now = now
        self._plan: JobPlan | None = None
        self._done: dict[str, _Done] = {}
        self._listed: _Listed | None = None
        self._next_listing = 0.0
        self._names: frozenset[str] = frozenset()
        self._changed_at: float | None = None

    @property
    def plan(self) -> JobPlan | None:
        return self._plan

    @property
    def changed_at(self) -> float | None:
        """When (on `clock`) a listing last found the folder changed: a shard started, finished, was
        renumbered or cleaned up. None before the plan. A job can be slow but alive; this says it is alive."""
        return self._changed_at

    def poll(self) -> ShardProgress | None:
        if self._plan is None:
            self._plan = self._read_plan()
            if self._plan is None:
                return None
        if self._listed is None or self._clock() >= self._next_listing:
            started = self._clock()
            names, pages = self._list()
            self._next_listing = started + (pages - 1) * LISTING_SECONDS_PER_EXTRA_PAGE
            seen = frozenset(names)
            if self._changed_at is None or seen != self._names:
                self._names = seen
                self._changed_at = started
            self._listed = self._counted(len(self._plan.shards), names)
        listed = self._listed
        # Once every shard is done the rate stops at the last one's finish, not at the merge's end.
        seconds = ((listed.last_finish or self._now()) - _aware(self._plan.created_at)).total_seconds()
        return ShardProgress(
            shards=len(self._plan.shards),
            done=listed.done,
            running=listed.running,
            failed=listed.failed,
            rows=listed.rows,
            seconds=max(seconds, 0.0),
        )

    def _counted(self, shards: int, names: list[str]) -> _Listed:
        from maas.service.shard_layout import shard_object

        # A csv shard whose cut was not a record boundary runs again from the true start, which is always
        # later than the planned one (the shard before it read on to finish its last record): an index's
        # latest start is its current run, and the objects of an earlier start are history.
        latest: dict[int, tuple[int, set[str]]] = {}
        for name in names:
            found = shard_object(name)
            if found is None or found.index >= shards:
                continue
            current = latest.get(found.index)
            if current is None or found.start > current[0]:
                latest[found.index] = (found.start, {found.kind})
            elif found.start == current[0]:
                current[1].add(found.kind)
        done: list[str] = []
        running = failed = 0
        for index, (start, kinds) in latest.items():
            # A shard whose error lines could not be renumbered has a result, yet fails the job.
            if "renumber_failed" in kinds:
                failed += 1
            elif "result" in kinds:
                done.append(self._keys.result(index, start))
            elif "failed" in kinds:
                failed += 1
            elif "started" in kinds or "output" in kinds:
                running += 1
        self._read_results([key for key in done if key not in self._done])
        finished = [self._done[key] for key in done]
        return _Listed(
            done=len(done),
            running=running,
            failed=failed,
            rows=sum(result.lines for result in finished),
            last_finish=max(r.finished_at for r in finished) if finished and len(done) == shards else None,
        )

    # ---- storage

    def _read_plan(self) -> JobPlan | None:
        from maas.service.shard_layout import JobPlan

        body = self._get(self._keys.plan, missing_ok=True)
        return None if body is None else _parsed(JobPlan, body, self._bucket, self._keys.plan)

    def _list(self) -> tuple[list[str], int]:
        from botocore.exceptions import BotoCoreError, ClientError

        folder = self._keys.shards_folder
        names: list[str] = []
        pages = 0
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=folder
            ):
                pages += 1
                names += [item["Key"][len(folder) :] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise _storage_error(f"listing s3://{self._bucket}/{folder}", exc) from None
        return names, max(pages, 1)

    def _read_results(self, keys: list[str]) -> None:
        from maas.service.shard_layout import ShardResult

        def read(key: str) -> tuple[str, _Done]:
            body = self._get(key, missing_ok=False)
            assert body is not None
            result = _parsed(ShardResult, body, self._bucket, key)
            return key, _Done(result.lines, _aware(result.finished_at))

        if not keys:
            return
        with ThreadPoolExecutor(max_workers=min(READ_CONCURRENCY, len(keys))) as pool:
            self._done.update(pool.map(read, keys))

    def _get(self, key: str, *, missing_ok: bool) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if missing_ok and exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _storage_error(f"reading s3://{self._bucket}/{key}", exc) from None
        except BotoCoreError as exc:
            raise _storage_error(f"reading s3://{self._bucket}/{key}", exc) from None
        return body


_Document = TypeVar("_Document", bound="BaseModel")


def _parsed(model: type[_Document], body: bytes, bucket: str, key: str) -> _Document:
    from pydantic import ValidationError

    from maas.errors import MaasError

    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise MaasError(
            f"s3://{bucket}/{key}: expected a {model.__name__} document, got one with {exc.error_count()} "
            "invalid or missing fields"
        ) from None


def _aware(moment: datetime) -> datetime:
    """The steps write UTC with an offset; a naive time is read as UTC rather than refused."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _storage_error(action: str, exc: Exception) -> Exception:
    from maas.errors import Unavailable

    return Unavailable(f"{action}: {exc}")


class ProgressLine:
    """One progress line on a stream. On a terminal it is rewritten in place whenever it changes; in a log a
    line is printed only when the shard counts change, at most every LOG_LINE_SECONDS, and the last counts
    are printed at close if they were held back."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        every: float = LOG_LINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._every = every
        self._clock = clock
        self._terminal = _is_terminal(stream)
        self._drawn = ""
        self._printed: tuple[int, int, int] | None = None
        self._printed_at = 0.0
        self._held: ShardProgress | None = None

    def show(self, progress: ShardProgress) -> None:
        text = f"{self._label}: {progress.describe()}"
        if self._terminal:
            if text != self._drawn:
                # \x1b[K clears what a longer line left to the right.
                self._stream.write(f"\r{text}\x1b[K")
                self._stream.flush()
                self._drawn = text
            return
        if progress.counts == self._printed:
            self._held = None
            return
        if self._printed is not None and self._clock() - self._printed_at < self._every:
            self._held = progress
            return
        self._print(progress)

    def close(self) -> None:
        """Ends the line on a terminal (the final counts stay visible); prints held-back counts in a log."""
        if self._terminal:
            if self._drawn:
                self._stream.write("\n")
                self._stream.flush()
                self._drawn = ""
        elif self._held is not None:
            self._print(self._held)

    def _print(self, progress: ShardProgress) -> None:
        print(f"{self._label}: {progress.describe()}", file=self._stream, flush=True)
        self._printed = progress.counts
        self._printed_at = self._clock()
        self._held = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
