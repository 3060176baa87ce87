"""Batch jobs: a whole input file through one pinned model version, into output.jsonl and status.json.

Like SageMaker Batch Transform, but event-driven: the input is read chunk by chunk, each chunk's rows run as
a few large batches, and output lines are written in input order through one multipart upload that becomes
visible only when it completes. Both result objects are create-only, so a duplicate delivery of the same
job (S3 and SQS both deliver at least once) leaves exactly one output and one status.

Failures split three ways:
- a bad line: that line's output is `{"error": ...}`, the job goes on;
- a bad job (unknown model, malformed file, out of time): status.json says why, with state "failed";
- a transient failure (storage, a model that cannot load now): raised, so the queue delivers it again.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from maas.errors import DeadlineExceeded, InvalidInput, MaasError, Unavailable
from maas.infer_types import InferenceRequest, Tensor
from maas.objects import CreateOnceUpload, object_exists, put_new, storage_errors
from maas.observability import MetricUnit, logger, metrics
from maas.runtime import LoadedModel
from maas.runtime.loaded_model import Deadline
from maas.service.inference import InferenceService
from maas.service.job_csv import CsvDecoder, iter_csv_records
from maas.service.job_jsonl import JsonlDecoder
from maas.service.job_layout import (
    CSV_HEADER_METADATA,
    INPUT_FORMATS,
    INPUT_STEM,
    JOBS_FOLDER,
    STATUS_NAME,
    JobCounts,
    JobLocation,
    JobStatus,
    LineError,
)
from maas.service.job_npy import npy_chunk, npy_chunks, read_npy_header
from maas.service.job_output import encode_rows, error_line
from maas.service.job_rows import MalformedJobInput, RowBatch, RowChunk, max_rows_per_run, single_row_spec
from maas.service.job_streams import ByteStream, iter_lines

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# A text model tokenizes every row, and attention grows with the batch: smaller runs keep memory flat.
TEXT_JOB_BATCH_ROWS = 32
STATUS_LINE_ERRORS = 20
# Stop this long before the function's deadline, so the job can still say that it ran out of time.
DEADLINE_MARGIN_MS = 20_000
# A run still going this close to the function's deadline is cut off, for the same reason. (Jobs have no
# per-request budget, MAAS_REQUEST_TIMEOUT: a large batch may take as long as the function allows.)
RUN_DEADLINE_MARGIN_MS = 10_000


class JobOutOfTime(MaasError, status=504):
    """The function's time ran out before the input did."""


@dataclass(slots=True)
class _Progress:
    counts: JobCounts
    errors: list[LineError]
    # csv: whether line 1 was read as a header; None until known (and for other formats).
    csv_header: bool | None = None


class _StorageStream:
    """The input's body: a read that fails in transit is a storage failure (transient, retried), never
    mistaken for a malformed file."""

    def __init__(self, body: ByteStream, action: str) -> None:
        self._body = body
        self._action = action

    def read(self, amt: int | None = None, /) -> bytes:
        try:
            with storage_errors(self._action):
                return self._body.read(amt)
        except OSError as exc:  # a connection reset that botocore did not wrap
            raise Unavailable(f"{self._action}: storage unreachable ({type(exc).__name__})") from None


@dataclass(frozen=True, slots=True)
class _JobInput:
    body: ByteStream
    size: int
    # The job's own say on a csv header (object metadata csv-header); None: only an unambiguous one.
    csv_header: bool | None = None


def csv_header_setting(metadata: Mapping[str, str]) -> bool | None:
    """The input object's `csv-header` metadata (x-amz-meta-csv-header: true or false), if set."""
    value = metadata.get(CSV_HEADER_METADATA)
    if value is None:
        return None
    text = value.strip().lower()
    if text not in ("true", "false"):
        shown = repr(value) if len(value) <= 16 else f"a value of {len(value)} characters"
        raise MalformedJobInput(
            f"input.csv metadata {CSV_HEADER_METADATA}: expected true or false, got {shown}"
        )
    return text == "true"


class BatchJobService:
    def __init__(self, inference: InferenceService, s3: S3Client, bucket: str, prefix: str = "") -> None:
        self.inference = inference
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def run(self, job: JobLocation, remaining_ms: Callable[[], int] | None = None) -> JobStatus | None:
        """Run one job to its status, or None when a previous delivery already finished it.

        Raises only for transient failures, which deserve another delivery."""
        if object_exists(self.s3, self.bucket, job.status_key):
            logger.info("job already finished; duplicate delivery ignored", extra={"job": job.path})
            return None
        started = datetime.now(UTC)
        clock = time.perf_counter()
        progress = _Progress(JobCounts(), [])
        model: LoadedModel | None = None
        input_bytes: int | None = None
        try:
            version = self.inference.select_version(job.model)
            model = self.inference.cache.get(job.model.name, version)
            with storage_errors(f"reading the job input s3://{self.bucket}/{job.input_key}"):
                response = self.s3.get_object(Bucket=self.bucket, Key=job.input_key)
            input_bytes = response["ContentLength"]
            job_input = _JobInput(
                body=_StorageStream(
                    response["Body"], f"reading the job input s3://{self.bucket}/{job.input_key}"
                ),
                size=input_bytes,
                csv_header=csv_header_setting(response.get("Metadata", {}))
                if job.input_format == "csv"
                else None,
            )
            with CreateOnceUpload(
                self.s3, self.bucket, job.output_key, content_type="application/x-ndjson"
            ) as output:
                for chunk_lines in self._answer(job, model, job_input, progress, remaining_ms):
                    output.write(chunk_lines)
                if not output.commit():
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
            model_version=model.version if model is not None else None,
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
        )
        put_new(self.s3, self.bucket, job.status_key, status.model_dump_json(indent=2).encode())
        self._record_status(job.path, status)
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
        self._record_status(job_id, status)
        return status

    def _answer(
        self,
        job: JobLocation,
        model: LoadedModel,
        job_input: _JobInput,
        progress: _Progress,
        remaining_ms: Callable[[], int] | None,
    ) -> Iterator[bytes]:
        wanted = self.inference.settings.job_batch_rows
        rows = max_rows_per_run(
            model.signature, wanted if model.tokenizer is None else min(wanted, TEXT_JOB_BATCH_ROWS)
        )
        chunks = self._chunks(job, model, job_input, rows, progress=progress)
        for chunk in _decoding_guarded(job, chunks):
            deadline = None
            if remaining_ms is not None:
                left_ms = remaining_ms()
                if left_ms < DEADLINE_MARGIN_MS:
                    raise _out_of_time(progress)
                deadline = Deadline.within(
                    (left_ms - RUN_DEADLINE_MARGIN_MS) / 1000, "the function's remaining time"
                )
            try:
                lines = self._run_chunk(model, chunk, progress, deadline)
            except DeadlineExceeded:
                raise _out_of_time(progress) from None
            yield lines

    def _chunks(
        self, job: JobLocation, model: LoadedModel, job_input: _JobInput, rows: int, *, progress: _Progress
    ) -> Iterator[RowChunk]:
        signature = model.signature
        max_line = self.inference.settings.max_request_bytes
        max_string_bytes = self.inference.settings.max_string_bytes
        body = job_input.body
        if job.input_format == "jsonl":
            jsonl_decoder = JsonlDecoder(model.name, signature, max_string_bytes=max_string_bytes)
            lines = iter_lines(body, max_line)
            first = 1
            while batch := list(islice(lines, rows)):
                yield jsonl_decoder.chunk(first, batch)
                first += len(batch)
        elif job.input_format == "csv":
            csv_decoder = CsvDecoder(
                model.name, signature, max_string_bytes=max_string_bytes, csv_header=job_input.csv_header
            )
            records = iter_csv_records(iter_lines(body, max_line), max_record_bytes=max_line)
            first_record = next(records, None)
            if first_record is not None:
                progress.csv_header = csv_decoder.is_header(first_record)
                if not progress.csv_header:
                    yield csv_decoder.chunk([first_record])
            while batch_records := list(islice(records, rows)):
                yield csv_decoder.chunk(batch_records)
        else:
            spec = single_row_spec(model.name, signature, "npy")
            header = read_npy_header(body, file_bytes=job_input.size)
            if header.row_bytes > max_line:
                # A row is read whole, so it is bounded as a jsonl line or a csv record is, before any read.
                raise MalformedJobInput(
                    f"input.npy rows: expected at most {max_line} bytes a row (MAAS_MAX_REQUEST_BYTES), "
                    f"got {header.row_bytes}"
                )
            spec.check(header.row_shape, "input.npy rows")
            for first_row, array in npy_chunks(body, header, rows):
                yield npy_chunk(first_row, array, signature.inputs[0], max_string_bytes=max_string_bytes)

    def _run_chunk(
        self, model: LoadedModel, chunk: RowChunk, progress: _Progress, deadline: Deadline | None = None
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
            lines[position] = error_line(message)
            if len(progress.errors) < STATUS_LINE_ERRORS:
                progress.errors.append(LineError(line=chunk.lines[position], error=message))
        progress.counts.lines += len(chunk)
        progress.counts.failed += len(errors)
        progress.counts.succeeded += len(chunk) - len(errors)
        return b"\n".join(line or b"" for line in lines) + b"\n"

    def _run(
        self, model: LoadedModel, inputs: dict[str, npt.NDArray[Any]], deadline: Deadline | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        datatypes = {spec.name: spec.datatype for spec in model.signature.inputs}
        request = InferenceRequest(
            inputs=[Tensor(name, datatypes[name], array) for name, array in inputs.items()]
        )
        response = self.inference.infer_loaded(model, request, deadline=deadline)
        return {tensor.name: tensor.array for tensor in response.outputs}

    def _record_status(self, job: str, status: JobStatus) -> None:
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


def _decoding_guarded(job: JobLocation, chunks: Iterator[RowChunk]) -> Iterator[RowChunk]:
    """The decoders answer every malformed input with a MaasError; should one slip through as another
    exception, the job still fails with a status rather than going back to the queue until the
    dead-letter queue takes it (reading is guarded apart: a storage failure stays transient)."""
    try:
        yield from chunks
    except MaasError:
        raise
    except Exception as exc:  # only the decoding of the user's own bytes runs in here
        logger.error(
            "job input could not be decoded",
            extra={
                "job": job.path,
                "error_type": type(exc).__name__,
                "traceback": "".join(traceback.format_tb(exc.__traceback__)),
            },
        )
        raise MalformedJobInput(
            f"input.{job.input_format}: expected a readable {job.input_format} file, got one that could "
            f"not be decoded ({type(exc).__name__})"
        ) from None


def _out_of_time(progress: _Progress) -> JobOutOfTime:
    return JobOutOfTime(
        f"job: expected to finish within the function's timeout, got through {progress.counts.lines} lines; "
        "split the input into smaller jobs"
    )


def _one_row(outputs: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """A one-row run's outputs, each as a batch of one; an output without that leading 1 is all the row's."""
    return {name: array if array.shape[:1] == (1,) else array[np.newaxis] for name, array in outputs.items()}


def _single_rows(batch: RowBatch) -> Iterator[tuple[int, dict[str, npt.NDArray[Any]]]]:
    for index, position in enumerate(batch.positions):
        yield position, {name: array[index : index + 1] for name, array in batch.inputs.items()}
