"""Batch jobs too large for one invocation: started on the jobs state machine, then run as its steps.

The batch function, handed a job whose input is larger than the shard size, starts one Step Functions
execution for it (ShardedJobStarter) instead of running it. The state machine (template.yaml
JobStateMachine) then invokes the same function with one step payload at a time (maas.events.job_steps):

- plan: cut the input into byte ranges (maas.service.job_plan) and write plan.json and round-0.json;
- shard (the Distributed Map, one per item of round-<n>.json): answer one range with the single path's own
  pipeline (BatchJobService.answer_lines), to the shard's output and then its result;
- shard_failed: a shard whose retries ran out is recorded as failed for good;
- merge: check that every shard starts where the one before it ended, and that error lines carry global
  numbers; ask for another round when not, else stitch the outputs in order (maas.service.job_compose) and
  write status.json, last;
- fail: a step that failed for good fails the job with a status saying so.

Every step is idempotent and restartable: each object is create-only and named by what it holds (a shard by
its index and its first byte), and each step looks at what exists before writing. A step raises only for a
transient failure, which Step Functions retries; a job or a shard that cannot succeed is written as data.
The layout and the documents are in maas.service.shard_layout.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from maas.config import (
    ENV_JOB_SHARD_BYTES,
    ENV_PROMPT_JOB_SHARD_BYTES,
    ENV_TEXT_JOB_SHARD_BYTES,
    Settings,
)
from maas.errors import IntegrityError, MaasError, NotFound, Unavailable
from maas.objects import object_exists, put_new, storage_errors
from maas.observability import logger
from maas.registry.manifest import Manifest
from maas.service.batch_jobs import (
    STATUS_LINE_ERRORS,
    BatchJobService,
    JobOutOfTime,
    JobProgress,
    check_prompt_job_format,
    job_rows_per_run,
)
from maas.service.job_compose import Piece, PieceSizeMismatch, TooManyParts, compose_in_order
from maas.service.job_inputs import (
    JobInput,
    StorageStream,
    check_npy_rows,
    csv_header_setting,
    read_input_range,
    shard_rows_header,
)
from maas.service.job_layout import JobCounts, JobLocation, JobStatus, JobTokens, LineError
from maas.service.job_npy import MAX_NPY_HEADER_BYTES, NPY_MAGIC, NpyHeader, npy_rows_as, read_npy_header
from maas.service.job_plan import (
    PlannedRange,
    plan_csv_ranges,
    plan_line_ranges,
    plan_npy_ranges,
    shard_size,
)
from maas.service.job_rows import (
    LINE_FIELD,
    AtLine,
    JobInputChanged,
    MalformedJobInput,
    row_specs,
    single_row_spec,
)
from maas.service.job_streams import READ_CHUNK_BYTES, ByteStream
from maas.service.shard_layout import (
    JobPlan,
    ShardFailure,
    ShardKeys,
    ShardResult,
    ShardSummary,
    ShardTask,
    execution_name,
    shard_object,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

    from maas.aws_clients import StepFunctionsClient

DocumentT = TypeVar("DocumentT", bound=BaseModel)

# The npy header's fixed lead: the magic, the version and (at most) a 4-byte header length.
_NPY_LEAD_BYTES = len(NPY_MAGIC) + 2 + 4
# A failure's message as status.json quotes it: ours are short, but a Lambda error's may be long.
MAX_FAILURE_MESSAGE = 1_000
# Shard results the merge reads at once.
MERGE_READ_CONCURRENCY = 16
# Parts the merge copies at once: an UploadPartCopy of a large shard output takes time inside S3 (no
# throughput is published), and the threads only wait on it, so many overlap for the one invocation's time.
MERGE_COPY_CONCURRENCY = 32
# Step Functions' error code when the execution name was used before (by a run that has ended since).
EXECUTION_ALREADY_EXISTS = "ExecutionAlreadyExists"
# Every error line starts so (maas.service.job_output.error_line): the number after it is the line's.
ERROR_LINE_PREFIX = b'{"error":"line '
_ERROR_LINE_NUMBER_END = b": "


@dataclass(frozen=True, slots=True)
class JobWork:
    """What the plan and merge steps tell the state machine: finished (well or not), or a round to run."""

    done: bool
    failed: bool = False
    # The round's items, a JSON array of ShardTask; None when done.
    items_key: str | None = None
    round: int = 0


@dataclass(frozen=True, slots=True)
class StepFailure:
    """A failure as Step Functions hands it to a Catch: the error's name and its cause (for a Lambda error,
    the JSON text of {"errorMessage", "errorType", ...})."""

    error: str
    cause: str

    def message(self) -> str:
        """The error's own message (a Lambda error's errorMessage, never its other fields), capped."""
        text = self.cause
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
            text = parsed["errorMessage"]
        text = text.strip() or "no cause given"
        if len(text) > MAX_FAILURE_MESSAGE:
            text = text[:MAX_FAILURE_MESSAGE] + "..."
        return text


def shard_bytes_for(settings: Settings, manifest: Manifest) -> int:
    """The threshold and shard size of a job for `manifest`'s version: a byte of prompts, of texts and of
    numbers takes very different times to answer, and a shard must end well inside the function's timeout."""
    if manifest.generation is not None:
        return settings.prompt_job_shard_bytes
    if manifest.tokenizer is not None:
        return settings.text_job_shard_bytes
    return settings.job_shard_bytes


def shard_bytes_setting(manifest: Manifest) -> str:
    """The setting shard_bytes_for reads for `manifest`'s version, and the template parameter that sets it."""
    if manifest.generation is not None:
        return f"{ENV_PROMPT_JOB_SHARD_BYTES} (template parameter PromptJobShardBytes)"
    if manifest.tokenizer is not None:
        return f"{ENV_TEXT_JOB_SHARD_BYTES} (template parameter TextJobShardBytes)"
    return f"{ENV_JOB_SHARD_BYTES} (template parameter JobShardBytes)"


class ShardedJobStarter:
    """The batch function's decision for a job: run it here, or start it in shards on the state machine."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        settings: Settings,
        stepfunctions: Callable[[], StepFunctionsClient],
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.settings = settings
        # Made on the first large job: most jobs never need the client.
        self.stepfunctions = stepfunctions

    def start(self, job: JobLocation, manifest: Manifest) -> bool:
        """True when the job runs in shards (started now, or by an earlier delivery); False: run it here."""
        settings = self.settings
        if not settings.job_state_machine_arn:
            return False
        shard_bytes = shard_bytes_for(settings, manifest)
        version = manifest.version
        size = _head(self.s3, self.bucket, job.input_key)["ContentLength"]
        if size <= shard_bytes:
            return False
        name = execution_name(job.job_id, job.input_key)
        document = {
            "job": {"input_key": job.input_key, "model_version": version},
            "concurrency": settings.job_shard_concurrency,
        }
        try:
            self.stepfunctions().start_execution(
                stateMachineArn=settings.job_state_machine_arn, name=name, input=json.dumps(document)
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code != EXECUTION_ALREADY_EXISTS:
                raise Unavailable(f"starting the jobs state machine for {job.path}: error {code}") from None
            logger.info(
                "job already started in shards; duplicate delivery ignored",
                extra={"job": job.path, "execution": name},
            )
            return True
        except BotoCoreError as exc:
            raise Unavailable(
                f"starting the jobs state machine for {job.path}: unreachable ({type(exc).__name__})"
            ) from None
        logger.info(
            "job started in shards",
            extra={"job": job.path, "execution": name, "input_bytes": size, "version": version},
        )
        return True


class ShardedJobSteps:
    """The state machine's steps for one job at a time, each over the job's folder in the bucket."""

    def __init__(self, jobs: BatchJobService) -> None:
        self.jobs = jobs
        self.s3 = jobs.s3
        self.bucket = jobs.bucket
        self.prefix = jobs.prefix
        self.settings = jobs.inference.settings

    # ---- plan

    def plan(self, job: JobLocation, version: int) -> JobWork:
        """Cut the input into round 0's shards (once: a plan already written is reused)."""
        keys = ShardKeys.for_job(job)
        finished = self._finished(job)
        if finished is not None:
            return finished
        plan = self._read(keys.plan, JobPlan)
        if plan is None:
            created = datetime.now(UTC)
            manifest: Manifest | None = None
            try:
                manifest = self.jobs.manifest(job.model.name, version)
                plan = self._new_plan(job, manifest, created)
            except Unavailable:
                raise
            except MaasError as exc:
                # As the single path's status: no version served when its manifest could not be read.
                served = version if manifest is not None else None
                self._write_failed(job, exc.message, started_at=created, version=served)
                return JobWork(done=True, failed=True)
            if not self._put_document(keys.plan, plan):
                plan = self._read_existing(keys.plan, JobPlan)
            logger.info(
                "job planned",
                extra={"job": job.path, "shards": len(plan.shards), "input_bytes": plan.input_bytes},
            )
        if plan.input_key != job.input_key:
            self._write_failed(job, _another_inputs_plan(job, plan), started_at=plan.created_at)
            return JobWork(done=True, failed=True)
        self._put_items(keys.round(0), plan.shards, create_only=True)
        return JobWork(done=False, items_key=keys.round(0), round=0)

    def _new_plan(self, job: JobLocation, manifest: Manifest, created: datetime) -> JobPlan:
        """Read what the plan needs (the input's size and metadata, an npy header, a window at each cut) and
        check the job as the single path would before its first row."""
        version = manifest.version
        head = _head(self.s3, self.bucket, job.input_key)
        size = head["ContentLength"]
        # Every later read, the plan's and the shards', is of this object: no job mixes two inputs' bytes.
        etag = head["ETag"]
        generates_text = manifest.generation is not None
        settings = self.settings
        shard_bytes = shard_size(size, shard_bytes_for(settings, manifest))
        csv_header: bool | None = None
        npy: NpyHeader | None = None
        if generates_text:
            check_prompt_job_format(job, version)
        elif job.input_format == "jsonl":
            row_specs(job.model.name, manifest.serving_signature)
        elif job.input_format == "csv":
            single_row_spec(job.model.name, manifest.serving_signature, "csv")
            csv_header = csv_header_setting(head.get("Metadata", {}))
        else:
            npy = self._checked_npy_header(job, manifest, size, etag)

        def read_range(start: int, end: int) -> bytes:
            return read_input_range(self.s3, self.bucket, job.input_key, start, end, etag=etag).read()

        max_line = settings.max_request_bytes
        ranges: list[PlannedRange]
        if npy is not None:
            rows = job_rows_per_run(
                manifest.serving_signature,
                tokenized=manifest.tokenizer is not None,
                wanted=settings.job_batch_rows,
            )
            ranges = plan_npy_ranges(npy, shard_bytes, rows)
        elif job.input_format == "csv":
            ranges = plan_csv_ranges(size, shard_bytes, read_range, max_record_bytes=max_line)
        else:
            ranges = plan_line_ranges(size, shard_bytes, read_range, max_line_bytes=max_line)
        return JobPlan(
            job_id=job.job_id,
            input_key=job.input_key,
            input_format=job.input_format,
            input_bytes=size,
            input_etag=etag,
            model_name=job.model.name,
            model_version=version,
            generates_text=generates_text,
            shard_bytes=shard_bytes,
            shards=[
                ShardTask(index=index, start=planned.start, end=planned.end, first_row=planned.first_row)
                for index, planned in enumerate(ranges)
            ],
            csv_header=csv_header,
            npy_data_offset=npy.data_offset if npy is not None else None,
            npy_row_bytes=npy.row_bytes if npy is not None else None,
            npy_rows=npy.rows if npy is not None else None,
            created_at=created,
        )

    def _checked_npy_header(self, job: JobLocation, manifest: Manifest, size: int, etag: str) -> NpyHeader:
        signature = manifest.serving_signature
        spec = single_row_spec(job.model.name, signature, "npy")
        header = self._npy_header(job, size, etag, file_bytes=size)
        check_npy_rows(spec, header, self.settings.max_request_bytes)
        # The rows' dtype must cast to the input's, as every chunk checks: checked once here on no rows.
        npy_rows_as(np.empty((0, *header.row_shape), dtype=header.dtype), signature.inputs[0])
        return header

    def _npy_header(
        self, job: JobLocation, size: int, etag: str | None, *, file_bytes: int | None
    ) -> NpyHeader:
        """The input's npy header, from one ranged read of at most the largest header numpy writes."""
        end = min(size, _NPY_LEAD_BYTES + MAX_NPY_HEADER_BYTES)
        head = (
            read_input_range(self.s3, self.bucket, job.input_key, 0, end, etag=etag).read()
            if end > 0
            else b""
        )
        return read_npy_header(io.BytesIO(head), file_bytes=file_bytes)

    # ---- shard

    def run_shard(
        self, job: JobLocation, version: int, task: ShardTask, remaining_ms: Callable[[], int] | None
    ) -> str:
        """Answer one shard (or renumber its output), unless done already; what happened, in a word."""
        keys = ShardKeys.for_job(job)
        if task.renumber_from is not None:
            return self._renumber(job, task)
        if object_exists(self.s3, self.bucket, keys.result(task.index, task.start)):
            return "already answered"
        put_new(self.s3, self.bucket, keys.started(task.index, task.start), b"", "application/octet-stream")
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        progress = JobProgress(JobCounts(), [])
        try:
            plan = self._read_existing(keys.plan, JobPlan)
            if plan.input_key != job.input_key:
                raise JobInputChanged(_another_inputs_plan(job, plan))
            job_input = None
            answers: Iterator[bytes] = iter(())
            if task.start < min(task.end, plan.input_bytes):
                loaded = self.jobs.load(job, version)
                job_input = self._shard_input(job, plan, task)
                answers = self.jobs.answer_lines(job, loaded, job_input, progress, remaining_ms)
            output_key = keys.output(task.index, task.start)
            written = self.jobs.write_output(output_key, answers)
            if written is None:  # an earlier attempt wrote it, and stopped before its result
                written = _head(self.s3, self.bucket, output_key)["ContentLength"]
        except Unavailable:
            raise
        except JobOutOfTime as exc:
            at = self._out_of_time(job, version, exc)
            self._put_failure(job, task, type(exc).__name__, exc.message, at)
            return "failed"
        except MaasError as exc:
            at = exc.at if isinstance(exc, MalformedJobInput) else None
            self._put_failure(job, task, type(exc).__name__, exc.message, at)
            return "failed"
        end = task.end
        lines = 0
        if job_input is not None:
            lines = job_input.position.lines
            if plan.input_format != "npy":
                end = task.start + job_input.position.bytes
        elif plan.input_format != "npy":
            end = task.start  # nothing of its own: a record before it reached past its end
        seconds = time.perf_counter() - clock
        result = ShardResult(
            index=task.index,
            start=task.start,
            end=end,
            lines=lines,
            counts=progress.counts,
            errors=progress.errors,
            error_lines=progress.counts.failed,
            output_key=output_key,
            output_bytes=written,
            csv_header=progress.csv_header,
            tokens=progress.tokens,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            seconds=round(seconds, 3),
        )
        self._put_document(keys.result(task.index, task.start), result)
        logger.info(
            "job shard answered",
            extra={
                "job": job.path,
                "shard": task.index,
                "start": task.start,
                "end": end,
                "lines": progress.counts.lines,
                "failed_lines": progress.counts.failed,
                "seconds": result.seconds,
            },
        )
        return "answered"

    def _out_of_time(self, job: JobLocation, version: int, exc: JobOutOfTime) -> AtLine | None:
        """A shard that ran out of time is too large for the function's timeout: the shard size says so."""
        if exc.line is None:
            return None
        setting = shard_bytes_setting(self.jobs.manifest(job.model.name, version))
        template = (
            "job: expected each shard to finish within the function's timeout, got through "
            f"{exc.lines} lines of this one, stopping at line {LINE_FIELD}; lower {setting} for "
            "smaller shards"
        )
        return AtLine(template, exc.line)

    def _shard_input(self, job: JobLocation, plan: JobPlan, task: ShardTask) -> JobInput:
        """The shard's bytes (start < end), read with one ranged GET."""
        size = plan.input_bytes
        if plan.input_format == "npy":
            header = self._npy_header(job, size, plan.input_etag, file_bytes=None)
            if (header.data_offset, header.row_bytes) != (plan.npy_data_offset, plan.npy_row_bytes):
                raise MalformedJobInput("input.npy: expected the header the plan read, got another one")
            return JobInput(
                body=self._range(job, plan, task.start, task.end),
                size=size,
                start=task.start,
                npy_header=shard_rows_header(header, task.start, task.end),
                first_row=task.first_row,
            )
        if plan.input_format == "csv":
            # The last record may run past the end, by at most the longest record the reader takes; it
            # counts lines without their \r, so a record of CRLF lines may hold up to twice its bytes.
            read_end = min(size, task.end + 2 * self.settings.max_request_bytes + 2)
            return JobInput(
                body=self._range(job, plan, task.start, read_end),
                size=size,
                csv_header=plan.csv_header,
                start=task.start,
                stop=task.end - task.start,
            )
        return JobInput(body=self._range(job, plan, task.start, task.end), size=size, start=task.start)

    def _range(self, job: JobLocation, plan: JobPlan, start: int, end: int) -> StorageStream:
        return read_input_range(self.s3, self.bucket, job.input_key, start, end, etag=plan.input_etag)

    def _renumber(self, job: JobLocation, task: ShardTask) -> str:
        """Copy the shard's output with each error line's number made global: local line L becomes
        L + renumber_from - 1. Streams; nothing else changes."""
        assert task.renumber_from is not None
        keys = ShardKeys.for_job(job)
        target = keys.renumbered(task.index, task.start, task.renumber_from)
        # Once output.jsonl is stitched, the shard outputs are gone: a late duplicate has nothing to do.
        if object_exists(self.s3, self.bucket, target) or object_exists(self.s3, self.bucket, job.output_key):
            return "already renumbered"
        source = keys.output(task.index, task.start)
        action = f"reading the shard output s3://{self.bucket}/{source}"
        try:
            with storage_errors(action, s3=self.s3, bucket=self.bucket):
                body = self.s3.get_object(Bucket=self.bucket, Key=source)["Body"]
            lines = renumbered_lines(
                StorageStream(body, action, s3=self.s3, bucket=self.bucket), task.renumber_from - 1
            )
            self.jobs.write_output(target, lines)
        except Unavailable:
            raise
        except MaasError as exc:
            self._put_failure(job, task, type(exc).__name__, exc.message)
            return "failed"
        return "renumbered"

    def record_shard_failure(self, job: JobLocation, task: ShardTask, failure: StepFailure) -> None:
        """A shard (or its renumbering) whose retries ran out: failed for good, unless it did finish after
        all."""
        keys = ShardKeys.for_job(job)
        if task.renumber_from is not None:
            done = keys.renumbered(task.index, task.start, task.renumber_from)
        else:
            done = keys.result(task.index, task.start)
        if object_exists(self.s3, self.bucket, done):
            return
        self._put_failure(job, task, failure.error or "Error", failure.message())

    def _put_failure(
        self, job: JobLocation, task: ShardTask, error_type: str, message: str, at: AtLine | None = None
    ) -> None:
        """`at`: the line the error names, for the merge to tell with its number in the whole input. A
        renumbering's failure has a key of its own: the shard itself is answered."""
        keys = ShardKeys.for_job(job)
        if task.renumber_from is not None:
            key = keys.renumber_failure(task.index, task.start, task.renumber_from)
        else:
            key = keys.failure(task.index, task.start)
        failure = ShardFailure(
            index=task.index,
            start=task.start,
            end=task.end,
            error_type=error_type,
            error=at.text() if at is not None else message,
            line=at.line if at is not None else None,
            error_template=at.template if at is not None else None,
            failed_at=datetime.now(UTC),
        )
        self._put_document(key, failure)
        logger.warning(
            "job shard failed",
            extra={"job": job.path, "shard": task.index, "start": task.start, "error": message},
        )

    # ---- merge

    def merge(self, job: JobLocation, round_number: int) -> JobWork:
        """Finish the job when every shard is answered in place; else the next round of shards to run."""
        keys = ShardKeys.for_job(job)
        finished = self._finished(job)
        if finished is not None:
            return finished
        plan = self._read(keys.plan, JobPlan)
        if plan is None:
            self._write_failed(job, "job: expected shards/plan.json before the merge, found none")
            return JobWork(done=True, failed=True)
        if plan.input_key != job.input_key:
            self._write_failed(job, _another_inputs_plan(job, plan), started_at=plan.created_at)
            return JobWork(done=True, failed=True)
        listed = self._listed(keys)
        results = self._results(listed)
        walked, missing = [], []
        expected: int | None = plan.shards[0].start if plan.shards else 0
        verified = True
        for planned in plan.shards:
            start = expected if expected is not None else planned.start
            result = results.get((planned.index, start))
            if result is not None:
                walked.append(result)
                expected = result.end
                continue
            if (planned.index, start) in listed.failures:
                if verified:
                    failure = self._read_existing(keys.failure(planned.index, start), ShardFailure)
                    # The shards before it are answered: its first line is the one after theirs.
                    first_line = 1 if plan.input_format == "npy" else 1 + sum(r.lines for r in walked)
                    return self._fail_for_shard(job, plan, failure, first_line)
            else:
                missing.append(planned.model_copy(update={"start": start, "renumber_from": None}))
            verified = False
            expected = None
        next_round = round_number + 1
        if missing:
            return self._next_round(job, plan, keys, next_round, missing)
        first_lines = _first_lines(walked)
        output_exists = object_exists(self.s3, self.bucket, job.output_key)
        if not output_exists:
            renumber = [
                ShardTask(index=r.index, start=r.start, end=r.end, renumber_from=first)
                for r, first in zip(walked, first_lines, strict=True)
                if plan.input_format != "npy"
                and r.error_lines > 0
                and first > 1
                and keys.renumbered(r.index, r.start, first) not in listed.sizes
            ]
            for task in renumber:
                assert task.renumber_from is not None
                failed_key = keys.renumber_failure(task.index, task.start, task.renumber_from)
                if failed_key in listed.sizes:
                    failure = self._read_existing(failed_key, ShardFailure)
                    return self._fail_for_shard(
                        job, plan, failure, task.renumber_from, doing=" while its error lines were renumbered"
                    )
            if renumber:
                return self._next_round(job, plan, keys, next_round, renumber)
            pieces = [
                self._piece(listed, keys, r, first if plan.input_format != "npy" else 1)
                for r, first in zip(walked, first_lines, strict=True)
            ]
            failed = self._compose(job, [piece for piece in pieces if piece.size > 0])
            if failed is not None:
                self._write_failed(job, failed, started_at=plan.created_at, version=plan.model_version)
                return JobWork(done=True, failed=True)
        self._delete_outputs(listed, keys)
        status = self._succeeded(job, plan, walked, first_lines)
        if put_new(self.s3, self.bucket, job.status_key, status.model_dump_json(indent=2).encode()):
            self.jobs.record_status(job.path, status)
        return JobWork(done=True)

    def _next_round(
        self, job: JobLocation, plan: JobPlan, keys: ShardKeys, number: int, tasks: list[ShardTask]
    ) -> JobWork:
        # Each round settles at least one more shard (the first missing one runs from a start that is
        # proven), and renumbering takes one more: beyond that something is wrong, and rounds would not end.
        if number > len(plan.shards) + 2:
            message = (
                f"job: expected the shards to settle within {len(plan.shards) + 2} rounds, got to round "
                f"{number} with {len(tasks)} shards still to run"
            )
            self._write_failed(job, message, started_at=plan.created_at, version=plan.model_version)
            return JobWork(done=True, failed=True)
        self._put_items(keys.round(number), tasks, create_only=False)
        logger.info(
            "job shards: another round", extra={"job": job.path, "round": number, "shards": len(tasks)}
        )
        return JobWork(done=False, items_key=keys.round(number), round=number)

    def _piece(self, listed: _Listing, keys: ShardKeys, result: ShardResult, first_line: int) -> Piece:
        key = keys.output(result.index, result.start)
        if result.error_lines > 0 and first_line > 1:
            key = keys.renumbered(result.index, result.start, first_line)
        size = listed.sizes.get(key)
        if size is None:
            raise IntegrityError(f"job: expected the shard output {key} before the merge, found none")
        return Piece(key=key, size=size)

    def _compose(self, job: JobLocation, pieces: list[Piece]) -> str | None:
        """Stitch the pieces into output.jsonl; why the job fails instead, when no retry can mend it."""
        try:
            if pieces:
                composed = compose_in_order(
                    self.s3,
                    self.bucket,
                    pieces,
                    job.output_key,
                    content_type="application/x-ndjson",
                    copy_concurrency=MERGE_COPY_CONCURRENCY,
                )
            else:
                composed = put_new(self.s3, self.bucket, job.output_key, b"", "application/x-ndjson")
        except TooManyParts as exc:
            return (
                "job: expected the shards' outputs to fit one multipart upload, got more parts than S3 "
                f"allows ({exc}); split the input into smaller jobs"
            )
        except PieceSizeMismatch as exc:
            return (
                f"job: expected each shard output to hold the bytes listed, got another size ({exc}): "
                "something else wrote under the job's shards/ folder while it ran; upload the input "
                "again as a new job"
            )
        if not composed:
            logger.info("job output already stitched by another merge", extra={"job": job.path})
        return None

    def _delete_outputs(self, listed: _Listing, keys: ShardKeys) -> None:
        """Best effort: the shards' outputs are in output.jsonl now (the lifecycle rule takes any left)."""
        doomed = [
            key
            for key in listed.sizes
            if (found := shard_object(key)) is not None and found.kind in ("output", "renumbered")
        ]
        for first in range(0, len(doomed), 1000):
            batch = doomed[first : first + 1000]
            try:
                with storage_errors(f"deleting shard outputs under s3://{self.bucket}/{keys.shards_folder}"):
                    self.s3.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                    )
            except MaasError as exc:
                logger.warning("shard outputs not deleted", extra={"error": exc.message})

    def _succeeded(
        self, job: JobLocation, plan: JobPlan, results: list[ShardResult], first_lines: list[int]
    ) -> JobStatus:
        counts = JobCounts()
        errors: list[LineError] = []
        tokens = JobTokens() if plan.generates_text else None
        for result, first in zip(results, first_lines, strict=True):
            counts.lines += result.counts.lines
            counts.succeeded += result.counts.succeeded
            counts.failed += result.counts.failed
            offset = 0 if plan.input_format == "npy" else first - 1
            for error in result.errors[: STATUS_LINE_ERRORS - len(errors)]:
                errors.append(LineError(line=error.line + offset, error=error.error))
            if tokens is not None and result.tokens is not None:
                tokens.prompt_tokens += result.tokens.prompt_tokens
                tokens.completion_tokens += result.tokens.completion_tokens
                tokens.time_budget_exhausted_lines += result.tokens.time_budget_exhausted_lines
        finished = datetime.now(UTC)
        seconds = max((finished - plan.created_at).total_seconds(), 0.0)
        return JobStatus(
            job_id=job.job_id,
            model=job.model_path or str(job.model),
            model_name=job.model.name,
            model_version=plan.model_version,
            state="succeeded",
            input_key=job.input_key,
            input_format=job.input_format,
            input_bytes=plan.input_bytes,
            csv_header=results[0].csv_header if results else None,
            output_key=job.output_key,
            counts=counts,
            errors=errors,
            started_at=plan.created_at,
            finished_at=finished,
            seconds=round(seconds, 3),
            rows_per_second=round(counts.lines / seconds, 1) if seconds > 0 else None,
            tokens=tokens,
            shards=[
                ShardSummary(
                    index=result.index,
                    start=result.start,
                    end=result.end,
                    lines=result.lines,
                    succeeded=result.counts.succeeded,
                    failed=result.counts.failed,
                    seconds=result.seconds,
                )
                for result in results
            ],
        )

    def _fail_for_shard(
        self, job: JobLocation, plan: JobPlan, failure: ShardFailure, first_line: int, *, doing: str = ""
    ) -> JobWork:
        """The job fails for its first shard that failed (`doing`: at what, when not answering); a line its
        error names is numbered in the input, the shard's first line being `first_line` (npy: 1, rows are
        numbered globally)."""
        error = failure.error
        if failure.line is not None and failure.error_template is not None:
            error = AtLine(failure.error_template, failure.line).text(first_line)
        message = (
            f"job: shard {failure.index} (input bytes {failure.start}-{failure.end}) failed{doing}: "
            f"{failure.error_type}: {error}"
        )
        self._write_failed(job, message, started_at=plan.created_at, version=plan.model_version)
        return JobWork(done=True, failed=True)

    # ---- fail

    def fail(self, job: JobLocation, failure: StepFailure, step: str | None = None) -> None:
        """A step failed for good (after its retries): the job fails, saying which step and why."""
        keys = ShardKeys.for_job(job)
        if object_exists(self.s3, self.bucket, job.status_key):
            return
        plan = self._read(keys.plan, JobPlan)
        where = step or ("planning" if plan is None else "running or merging its shards")
        message = (
            f"job: the jobs state machine failed while {where}: {failure.error or 'Error'}: "
            f"{failure.message()}"
        )
        self._write_failed(
            job,
            message,
            started_at=plan.created_at if plan is not None else None,
            version=plan.model_version if plan is not None else None,
        )

    # ---- storage

    def _finished(self, job: JobLocation) -> JobWork | None:
        status = self._read(job.status_key, JobStatus)
        if status is None:
            return None
        return JobWork(done=True, failed=status.state == "failed")

    def _write_failed(
        self,
        job: JobLocation,
        message: str,
        *,
        started_at: datetime | None = None,
        version: int | None = None,
    ) -> None:
        finished = datetime.now(UTC)
        started = started_at or finished
        status = JobStatus(
            job_id=job.job_id,
            model=job.model_path or str(job.model),
            model_name=job.model.name,
            model_version=version,
            state="failed",
            error=message,
            input_key=job.input_key,
            input_format=job.input_format,
            started_at=started,
            finished_at=finished,
            seconds=round(max((finished - started).total_seconds(), 0.0), 3),
        )
        if put_new(self.s3, self.bucket, job.status_key, status.model_dump_json(indent=2).encode()):
            self.jobs.record_status(job.path, status)

    def _read(self, key: str, document: type[DocumentT]) -> DocumentT | None:
        try:
            with storage_errors(f"reading s3://{self.bucket}/{key}", s3=self.s3):
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except NotFound:
            return None
        try:
            return document.model_validate_json(body)
        except ValidationError:
            raise IntegrityError(
                f"job: s3://{self.bucket}/{key} is not the {document.__name__} the job's steps write"
            ) from None

    def _read_existing(self, key: str, document: type[DocumentT]) -> DocumentT:
        found = self._read(key, document)
        if found is None:
            raise IntegrityError(f"job: expected s3://{self.bucket}/{key}, found none")
        return found

    def _put_document(self, key: str, document: BaseModel) -> bool:
        return put_new(self.s3, self.bucket, key, document.model_dump_json().encode())

    def _put_items(self, key: str, tasks: list[ShardTask], *, create_only: bool) -> None:
        body = json.dumps([task.model_dump(exclude_none=True) for task in tasks]).encode()
        if create_only:
            put_new(self.s3, self.bucket, key, body)
            return
        # A later round is the merge's answer to what it found now: a rerun of the same merge rewrites it.
        with storage_errors(f"writing s3://{self.bucket}/{key}", s3=self.s3):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def _listed(self, keys: ShardKeys) -> _Listing:
        sizes: dict[str, int] = {}
        token: str | None = None
        with storage_errors(f"listing s3://{self.bucket}/{keys.shards_folder}", s3=self.s3):
            while True:
                page = (
                    self.s3.list_objects_v2(
                        Bucket=self.bucket, Prefix=keys.shards_folder, ContinuationToken=token
                    )
                    if token
                    else self.s3.list_objects_v2(Bucket=self.bucket, Prefix=keys.shards_folder)
                )
                for item in page.get("Contents", []):
                    sizes[item["Key"]] = item["Size"]
                token = page.get("NextContinuationToken")
                if not token:
                    break
        return _Listing(sizes)

    def _results(self, listed: _Listing) -> dict[tuple[int, int], ShardResult]:
        keys = [
            key for key in listed.sizes if (found := shard_object(key)) is not None and found.kind == "result"
        ]
        if not keys:
            return {}
        with ThreadPoolExecutor(min(MERGE_READ_CONCURRENCY, len(keys)), "merge") as pool:
            read = list(pool.map(lambda key: self._read_existing(key, ShardResult), keys))
        return {(result.index, result.start): result for result in read}


class _Listing:
    """The objects under a job's shards/ folder, with their sizes."""

    def __init__(self, sizes: Mapping[str, int]) -> None:
        self.sizes = sizes
        self.failures = {
            (found.index, found.start)
            for key in sizes
            if (found := shard_object(key)) is not None and found.kind == "failed"
        }


def _another_inputs_plan(job: JobLocation, plan: JobPlan) -> str:
    """Two inputs in one job folder (input.jsonl and input.csv): they would share its shards and results."""
    planned = plan.input_key.rpartition("/")[2]
    return (
        f"job: expected one input in {job.folder}, got {planned} (planned first) and "
        f"{job.input_key.rpartition('/')[2]}; upload each as a job of its own, under its own job id"
    )


def _first_lines(results: list[ShardResult]) -> list[int]:
    """Each shard's first line in the whole input: 1 + the lines of the shards before it."""
    firsts, line = [], 1
    for result in results:
        firsts.append(line)
        line += result.lines
    return firsts


def renumbered_lines(body: ByteStream, offset: int, chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
    """A shard's output lines from `body`, each error line's number raised by `offset`, a chunk at a time:
    `{"error":"line 7: ...` becomes `{"error":"line 7+offset: ...`, as error_line writes it for that line."""
    pending = b""
    while chunk := body.read(chunk_bytes):
        complete, newline, pending = (pending + chunk).rpartition(b"\n")
        if newline:
            yield _renumber_lines(complete, offset) + b"\n"
    if pending:
        yield _renumber_lines(pending, offset)


def _renumber_lines(text: bytes, offset: int) -> bytes:
    if ERROR_LINE_PREFIX not in text:
        return text
    lines = text.split(b"\n")
    for index, line in enumerate(lines):
        if line.startswith(ERROR_LINE_PREFIX):
            number_end = line.index(_ERROR_LINE_NUMBER_END, len(ERROR_LINE_PREFIX))
            number = int(line[len(ERROR_LINE_PREFIX) : number_end]) + offset
            lines[index] = ERROR_LINE_PREFIX + str(number).encode() + line[number_end:]
    return b"\n".join(lines)


def _head(s3: S3Client, bucket: str, key: str) -> HeadObjectOutputTypeDef:
    with storage_errors(f"reading s3://{bucket}/{key}", s3=s3):
        return s3.head_object(Bucket=bucket, Key=key)
