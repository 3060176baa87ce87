"""Batch jobs: a whole input file through one pinned model version, into output.jsonl and status.json.

Like SageMaker Batch Transform, but event-driven: the input is read chunk by chunk, each chunk's rows run as
a few large batches, and output lines are written in input order through one multipart upload that becomes
visible only when it completes. Both result objects are create-only, so a duplicate delivery of the same
job (S3 and SQS both deliver at least once) leaves exactly one output and one status.

A job whose version is a text generator is a prompt job: each jsonl line a chat completion or completion
body, answered by the completion service (maas.service.event_completions) one line after the other, each
output line the OpenAI response object; status.json then also counts the tokens used.

A job whose input is larger than the shard size (MAAS_JOB_SHARD_BYTES; MAAS_PROMPT_JOB_SHARD_BYTES for a
prompt job) starts the jobs state machine instead, when one is configured (maas.service.sharded_jobs): its
shards each run `answer_lines`, this module's pipeline, over a byte range of the input, and the output is the
same, byte for byte.

Failures split three ways:
- a bad line: that line's output is `{"error": ...}`, the job goes on;
- a bad job (unknown model, malformed file, out of time): status.json says why, with state "failed";
- a transient failure (storage, a model that cannot load now): raised, so the queue delivers it again.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from maas.errors import DeadlineExceeded, InvalidInput, MaasError, Unavailable
from maas.infer_types import InferenceRequest, Tensor
from maas.objects import CreateOnceUpload, object_exists, put_new
from maas.observability import MetricUnit, logger, metrics
from maas.registry.manifest import Manifest
from maas.runtime import LoadedModel
from maas.runtime.loaded_model import Deadline
from maas.service.inference import MANIFEST_CACHE_ENTRIES, InferenceService
from maas.service.job_inputs import JobInput, decoding_guarded, open_job_input, row_chunks
from maas.service.job_layout import (
    INPUT_FORMATS,
    INPUT_STEM,
    JOBS_FOLDER,
    STATUS_NAME,
    JobCounts,
    JobLocation,
    JobStatus,
    JobTokens,
    LineError,
)
from maas.service.job_output import encode_rows, error_line
from maas.service.job_rows import MalformedJobInput, RowBatch, RowChunk, max_rows_per_run
from maas.service.job_streams import iter_lines
from maas.signature import Signature

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from maas.service.event_completions import EventCompletions, PromptJob

# A text model tokenizes every row, and attention grows with the batch: smaller runs keep memory flat.
TEXT_JOB_BATCH_ROWS = 32
STATUS_LINE_ERRORS = 20
# Stop this long before the function's deadline, so the job can still say that it ran out of time.
DEADLINE_MARGIN_MS = 20_000
# A run still going this close to the function's deadline is cut off, for the same reason. (Jobs have no
# per-request budget, MAAS_REQUEST_TIMEOUT: a large batch may take as long as the function allows.)
RUN_DEADLINE_MARGIN_MS = 10_000


class JobOutOfTime(MaasError, status=504):
    """The function's time ran out before the input did: after `lines` lines answered, before line `line`
    (npy: row; as the reader numbered it) could be."""

    def __init__(self, message: str, *, lines: int, line: int | None = None) -> None:
        super().__init__(message)
        self.lines = lines
        self.line = line


@dataclass(slots=True)
class JobProgress:
    """What answering the input has counted so far (a whole job's, or one shard's)."""

    counts: JobCounts
    errors: list[LineError]
    # csv: whether line 1 was read as a header; None until known (and for other formats).
    csv_header: bool | None = None
    # A prompt job's token counts; None for other jobs.
    tokens: JobTokens | None = None

    def line_failed(self, line: int, message: str) -> None:
        if len(self.errors) < STATUS_LINE_ERRORS:
            self.errors.append(LineError(line=line, error=message))

    def found_csv_header(self, is_header: bool) -> None:
        self.csv_header = is_header

    def lines_answered(self, lines: int, failed: int) -> None:
        self.counts.lines += lines
        self.counts.failed += failed
        self.counts.succeeded += lines - failed


class JobSharding(Protocol):
    """The decision to run a large job in shards (maas.service.sharded_jobs.ShardedJobStarter)."""

    def start(self, job: JobLocation, manifest: Manifest) -> bool:
        """True when the job now runs in shards elsewhere (or already does); False: run it here."""
        ...


class BatchJobService:
    def __init__(
        self,
        inference: InferenceService,
        s3: S3Client,
        bucket: str,
        completions: Callable[[], EventCompletions],
        prefix: str = "",
        *,
        sharding: JobSharding | None = None,
    ) -> None:
        self.inference = inference
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        # None: every job runs in one invocation.
        self.sharding = sharding
        # Built on first use (maas.service.generation_on_demand): most containers never generate text.
        self.completions = completions
        # Versions are immutable: whether one generates text is read once per process.
        self._manifest: Callable[[str, int], Manifest] = functools.lru_cache(maxsize=MANIFEST_CACHE_ENTRIES)(
            inference.registry.manifest
        )

    def run(self, job: JobLocation, remaining_ms: Callable[[], int] | None = None) -> JobStatus | None:
        """Run one job to its status, or None when a previous delivery already finished it.

        Raises only for transient failures, which deserve another delivery."""
        if object_exists(self.s3, self.bucket, job.status_key):
            logger.info("job already finished; duplicate delivery ignored", extra={"job": job.path})
            return None
        started = datetime.now(UTC)
        clock = time.perf_counter()
        progress = JobProgress(JobCounts(), [])
        served_version: int | None = None
        input_bytes: int | None = None
        try:
            version = self.inference.select_version(job.model)
            if self.sharding is not None and self.sharding.start(job, self.manifest(job.model.name, version)):
                return None
            loaded = self.load(job, version)
            served_version = version
            job_input = open_job_input(self.s3, self.bucket, job)
            input_bytes = job_input.size
            answers = self.answer_lines(job, loaded, job_input, progress, remaining_ms)
            if self.write_output(job.output_key, answers) is None:
                logger.info("job output already written by another delivery", extra={"job": job.path})
            failure: str | None = None
        except Unavailable:
            raise
        except MaasError as exc:
            if exc.status >= 500 and not isinstance(exc, JobOutOfTime):
                logger.error(
                    "job failed", extra={"job": job.path, "status": exc.status, "error": exc.message}
                )
            failure = exc.message
        seconds = time.perf_counter() - clock
        status = JobStatus(
            job_id=job.job_id,
            model=job.model_path or str(job.model),
            model_name=job.model.name,
            model_version=served_version,
            state="failed" if failure else "succeeded",
            error=failure,
            input_key=job.input_key,
            input_format=job.input_format,
            input_bytes=input_bytes,
            csv_header=progress.csv_header,
            output_key=None if failure else job.output_key,
            counts=progress.counts,
            errors=progress.errors,
            started_at=started,
            finished_at=datetime.now(UTC),
            seconds=round(seconds, 3),
            rows_per_second=round(progress.counts.lines / seconds, 1)
            if seconds > 0 and not failure
            else None,
            tokens=progress.tokens,
        )
        put_new(self.s3, self.bucket, job.status_key, status.model_dump_json(indent=2).encode())
        self.record_status(job.path, status)
        return status

    def reject(self, input_key: str, reason: str) -> JobStatus | None:
        """Fail a job whose key cannot be parsed (a malformed model reference or job id), next to its input.

        A key that is not a job input at all (the notification rules should never send one) is only logged."""
        folder, _, file_name = input_key.rpartition("/")
        jobs_folder = f"{self.prefix}{JOBS_FOLDER}/"
        stem, _, extension = file_name.partition(".")
        if not folder.startswith(jobs_folder) or stem != INPUT_STEM or extension not in INPUT_FORMATS:
            logger.warning("event for a key that is not a job input ignored", extra={"reason": reason})
            return None
        status_key = f"{folder}/{STATUS_NAME}"
        model_text, _, job_id = folder[len(jobs_folder) :].rpartition("/")
        now = datetime.now(UTC)
        status = JobStatus(
            job_id=job_id,
            model=model_text,
            model_name=model_text.partition("@")[0].partition("/")[0],
            state="failed",
            error=reason,
            input_key=input_key,
            input_format=extension,
            started_at=now,
            finished_at=now,
            seconds=0.0,
        )
        if not put_new(self.s3, self.bucket, status_key, status.model_dump_json(indent=2).encode()):
            return None
        self.record_status(job_id, status)
        return status

    def manifest(self, name: str, version: int) -> Manifest:
        """A version's manifest, read once per process (versions are immutable)."""
        return self._manifest(name, version)

    def generates_text(self, name: str, version: int) -> bool:
        """Whether `version` is a text generator, whose jobs are prompt jobs."""
        if self.inference.cache.peek(name, version) is not None:
            return False  # only graphs that answer tensors are loaded into the model cache
        return self._manifest(name, version).generation is not None

    def load(self, job: JobLocation, version: int) -> LoadedModel | PromptJob:
        """What answers the job's lines: the model, or for a text generator the prompt job (loaded now, so a
        model that cannot load fails the job rather than every line)."""
        prompts = self._prompt_job(job, version)
        return self.inference.cache.get(job.model.name, version) if prompts is None else prompts

    def answer_lines(
        self,
        job: JobLocation,
        loaded: LoadedModel | PromptJob,
        job_input: JobInput,
        progress: JobProgress,
        remaining_ms: Callable[[], int] | None,
    ) -> Iterator[bytes]:
        """The output lines of `job_input`, in order, a chunk of them at a time (each ending in a newline):
        the one pipeline that a whole job and each of its shards run."""
        if isinstance(loaded, LoadedModel):
            return self._answer(job, loaded, job_input, progress, remaining_ms)
        return self._answer_prompts(loaded, job_input, progress, remaining_ms)

    def write_output(self, key: str, answers: Iterator[bytes]) -> int | None:
        """Stream `answers` to `key`, create-only: the bytes written, or None when the key already existed."""
        with CreateOnceUpload(self.s3, self.bucket, key, content_type="application/x-ndjson") as output:
            for chunk_lines in answers:
                output.write(chunk_lines)
            return output.bytes_written if output.commit() else None

    def _answer(
        self,
        job: JobLocation,
        model: LoadedModel,
        job_input: JobInput,
        progress: JobProgress,
        remaining_ms: Callable[[], int] | None,
    ) -> Iterator[bytes]:
        rows = job_rows_per_run(
            model.signature,
            tokenized=model.tokenizer is not None,
            wanted=self.inference.settings.job_batch_rows,
        )
        chunks = row_chunks(
            job,
            model,
            job_input,
            rows,
            settings=self.inference.settings,
            csv_header_found=progress.found_csv_header,
        )
        for chunk in decoding_guarded(job, chunks):
            deadline = None
            if remaining_ms is not None:
                left_ms = _time_to_start_a_run(progress, remaining_ms, chunk.lines[0])
                deadline = Deadline.within(
                    (left_ms - RUN_DEADLINE_MARGIN_MS) / 1000, "the function's remaining time"
                )
            try:
                lines = self._run_chunk(model, chunk, progress, deadline)
            except DeadlineExceeded:
                raise _out_of_time(progress, chunk.lines[0]) from None
            yield lines

    def _run_chunk(
        self, model: LoadedModel, chunk: RowChunk, progress: JobProgress, deadline: Deadline | None = None
    ) -> bytes:
        lines: list[bytes | None] = [None] * len(chunk)
        for batch in chunk.batches:
            try:
                outputs = self._run(model, batch.inputs, deadline)
            except InvalidInput:
                # One row the graph rejects (an index out of range) must not fail its neighbours.
                outputs = None
            if outputs is not None and all(
                array.shape[:1] == (len(batch.positions),) for array in outputs.values()
            ):
                encode_rows(outputs, batch.positions, lines)
                continue
            # Row by row also when some output does not come one per row (a count over the whole batch).
            for position, row in _single_rows(batch):
                try:
                    encode_rows(_one_row(self._run(model, row, deadline)), [position], lines)
                except InvalidInput as exc:
                    chunk.fail(position, exc.message)
        errors = chunk.errors
        for position, message in sorted(errors.items()):
            lines[position] = error_line(chunk.lines[position], message)
            progress.line_failed(chunk.lines[position], message)
        progress.lines_answered(len(chunk), failed=len(errors))
        return b"\n".join(line or b"" for line in lines) + b"\n"

    def _prompt_job(self, job: JobLocation, version: int) -> PromptJob | None:
        """The job's lines as prompts, the generator loaded, when `version` generates text; else None."""
        name = job.model.name
        if not self.generates_text(name, version):
            return None
        check_prompt_job_format(job, version)
        return self.completions().prompt_job(name, version)

    def _answer_prompts(
        self,
        prompts: PromptJob,
        job_input: JobInput,
        progress: JobProgress,
        remaining_ms: Callable[[], int] | None,
    ) -> Iterator[bytes]:
        """One line at a time, each held to the function's clock less the margin that leaves the job time
        to write its status: a line cut there ends with finish_reason "length", and the job then runs out
        of time as any other does, with no output."""
        tokens = progress.tokens = JobTokens()
        lines = iter_lines(
            job_input.body,
            self.inference.settings.max_request_bytes,
            strip_bom=job_input.start == 0,
            position=job_input.position,
        )
        for number, line in enumerate(lines, start=1):
            clock = None
            if remaining_ms is not None:
                _time_to_start_a_run(progress, remaining_ms, number)
                clock = functools.partial(_less_margin, remaining_ms)
            answered = prompts.answer(number, line, clock)
            if answered.error is not None:
                progress.line_failed(number, answered.error)
            elif answered.answer is not None:
                tokens.prompt_tokens += answered.answer.prompt_tokens
                tokens.completion_tokens += answered.answer.completion_tokens
                tokens.time_budget_exhausted_lines += answered.answer.time_budget_exhausted
            progress.lines_answered(1, failed=int(answered.error is not None))
            yield answered.output + b"\n"

    def _run(
        self, model: LoadedModel, inputs: dict[str, npt.NDArray[Any]], deadline: Deadline | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        datatypes = {spec.name: spec.datatype for spec in model.signature.inputs}
        request = InferenceRequest(
            inputs=[Tensor(name, datatypes[name], array) for name, array in inputs.items()]
        )
        response = self.inference.infer_loaded(model, request, deadline=deadline)
        return {tensor.name: tensor.array for tensor in response.outputs}

    def record_status(self, job: str, status: JobStatus) -> None:
        metrics.add_metric(name="JobLines", unit=MetricUnit.Count, value=status.counts.lines)
        metrics.add_metric(name="JobFailedLines", unit=MetricUnit.Count, value=status.counts.failed)
        metrics.add_metric(name="JobSeconds", unit=MetricUnit.Seconds, value=status.seconds)
        logger.info(
            "job finished",
            extra={
                "job": job,
                "state": status.state,
                "version": status.model_version,
                "lines": status.counts.lines,
                "failed_lines": status.counts.failed,
                "seconds": status.seconds,
                "error": status.error,
            },
        )


def job_rows_per_run(signature: Signature, *, tokenized: bool, wanted: int) -> int:
    """Rows a job runs per onnxruntime call: `wanted` (MAAS_JOB_BATCH_ROWS), at most TEXT_JOB_BATCH_ROWS for
    a text model, 1 for a model whose batch dimension is fixed at 1."""
    return max_rows_per_run(signature, min(wanted, TEXT_JOB_BATCH_ROWS) if tokenized else wanted)


def check_prompt_job_format(job: JobLocation, version: int) -> None:
    """A text generator's job reads jsonl only: one request body per line."""
    if job.input_format != "jsonl":
        raise MalformedJobInput(
            f"input.{job.input_format}: expected input.jsonl, as model '{job.model.name}' v{version} "
            "generates text: one chat completion ('messages') or completion ('prompt') body per line"
        )


def _time_to_start_a_run(progress: JobProgress, remaining_ms: Callable[[], int], line: int) -> int:
    """The function's milliseconds left; JobOutOfTime when too few are left to start a run (from `line` on)
    and still say how far the job got."""
    left_ms = remaining_ms()
    if left_ms < DEADLINE_MARGIN_MS:
        raise _out_of_time(progress, line)
    return left_ms


def _less_margin(remaining_ms: Callable[[], int]) -> int:
    """The clock a prompt line's generation is held to: it must end while the job can still write."""
    return remaining_ms() - RUN_DEADLINE_MARGIN_MS


def _out_of_time(progress: JobProgress, line: int) -> JobOutOfTime:
    lines = progress.counts.lines
    return JobOutOfTime(
        f"job: expected to finish within the function's timeout, got through {lines} lines; "
        "split the input into smaller jobs",
        lines=lines,
        line=line,
    )


def _one_row(outputs: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """A one-row run's outputs, each as a batch of one; an output without that leading 1 is all the row's."""
    return {name: array if array.shape[:1] == (1,) else array[np.newaxis] for name, array in outputs.items()}


def _single_rows(batch: RowBatch) -> Iterator[tuple[int, dict[str, npt.NDArray[Any]]]]:
    for index, position in enumerate(batch.positions):
        yield position, {name: array[index : index + 1] for name, array in batch.inputs.items()}
