"""A batch job's input object, opened and read as row chunks for a model's inputs, whatever its format.

The body is read as it arrives and never held whole. A read that fails in transit is a storage failure
(transient: the queue delivers the job again); bytes that no decoder can read fail the job with a status.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import TYPE_CHECKING

from maas.config import Settings
from maas.errors import MaasError, Unavailable
from maas.objects import PreconditionFailed, storage_errors, unreachable
from maas.observability import logger
from maas.runtime import LoadedModel
from maas.service.job_csv import CsvDecoder, CsvRecord, iter_csv_records
from maas.service.job_jsonl import JsonlDecoder
from maas.service.job_layout import CSV_HEADER_METADATA, JobLocation
from maas.service.job_npy import NpyHeader, npy_chunk, npy_chunks, read_npy_header
from maas.service.job_rows import JobInputChanged, MalformedJobInput, RowChunk, RowSpec, single_row_spec
from maas.service.job_streams import ByteStream, StreamPosition, iter_lines

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StorageStream:
    """The input's body: a read that fails in transit is a storage failure (transient, retried), never
    mistaken for a malformed file."""

    def __init__(
        self, body: ByteStream, action: str, *, s3: S3Client | None = None, bucket: str | None = None
    ) -> None:
        self._body = body
        self._action = action
        self._s3 = s3
        self._bucket = bucket

    def read(self, amt: int | None = None, /) -> bytes:
        try:
            with storage_errors(self._action, s3=self._s3, bucket=self._bucket):
                return self._body.read(amt)
        except OSError as exc:  # a connection reset that botocore did not wrap
            raise Unavailable(unreachable(self._action, exc, s3=self._s3, bucket=self._bucket)) from None


@dataclass(frozen=True, slots=True)
class JobInput:
    """The bytes a job (or one shard of it) reads, and where they sit in the input object."""

    body: ByteStream
    # The whole input object's size.
    size: int
    # The job's own say on a csv header (object metadata csv-header); None: only an unambiguous one.
    csv_header: bool | None = None
    # The object byte `body` starts at. Only at 0 may a byte-order mark be dropped or a csv header be read.
    start: int = 0
    # csv: stop after the record that ends at or past this many bytes of `body` (a shard's end, where the
    # body reads on to finish its last record); None: read to the end of `body`.
    stop: int | None = None
    # npy: the file's header, read apart, when `body` holds only rows (a shard's), and the first row's number.
    npy_header: NpyHeader | None = None
    first_row: int = 1
    # How far the rows read got: physical lines (npy: rows) and bytes of `body`.
    position: StreamPosition = field(default_factory=StreamPosition)


def open_job_input(s3: S3Client, bucket: str, job: JobLocation) -> JobInput:
    action = f"reading the job input s3://{bucket}/{job.input_key}"
    with storage_errors(action, s3=s3, bucket=bucket):
        response = s3.get_object(Bucket=bucket, Key=job.input_key)
    return JobInput(
        body=StorageStream(response["Body"], action, s3=s3, bucket=bucket),
        size=response["ContentLength"],
        csv_header=csv_header_setting(response.get("Metadata", {})) if job.input_format == "csv" else None,
    )


def read_input_range(
    s3: S3Client, bucket: str, key: str, start: int, end: int, *, etag: str | None
) -> StorageStream:
    """Bytes [start, end) of the input object, as they arrive (end > start), of the object whose ETag is
    `etag` (the one the job was planned on): JobInputChanged when the key holds another one now, so that no
    job mixes two inputs' bytes. (A GET reads one version of the object to its end, whatever happens to the
    key meanwhile.) None: whatever the key holds."""
    action = f"reading bytes {start}-{end - 1} of the job input s3://{bucket}/{key}"
    byte_range = f"bytes={start}-{end - 1}"
    try:
        with storage_errors(action, s3=s3, bucket=bucket):
            if etag is None:
                response = s3.get_object(Bucket=bucket, Key=key, Range=byte_range)
            else:
                response = s3.get_object(Bucket=bucket, Key=key, Range=byte_range, IfMatch=etag)
    except PreconditionFailed:
        raise JobInputChanged(
            f"{key.rpartition('/')[2]}: expected the object planned (ETag {etag}), got one replaced since; "
            "upload it again as a new job"
        ) from None
    return StorageStream(response["Body"], action, s3=s3, bucket=bucket)


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


def row_chunks(
    job: JobLocation,
    model: LoadedModel,
    job_input: JobInput,
    rows: int,
    *,
    settings: Settings,
    csv_header_found: Callable[[bool], None],
) -> Iterator[RowChunk]:
    """The input as chunks of `rows` rows for `model`; a csv input says first whether line 1 is a header.

    Lines (npy: rows) are numbered from 1 in `job_input.body` (npy: from `job_input.first_row`), and
    `job_input.position` follows the reading."""
    signature = model.signature
    max_line = settings.max_request_bytes
    max_string_bytes = settings.max_string_bytes
    body = job_input.body
    position = job_input.position
    at_start = job_input.start == 0
    if job.input_format == "jsonl":
        jsonl_decoder = JsonlDecoder(model.name, signature, max_string_bytes=max_string_bytes)
        lines = iter_lines(body, max_line, strip_bom=at_start, position=position)
        first = 1
        while batch := list(islice(lines, rows)):
            yield jsonl_decoder.chunk(first, batch)
            first += len(batch)
    elif job.input_format == "csv":
        csv_decoder = CsvDecoder(
            model.name, signature, max_string_bytes=max_string_bytes, csv_header=job_input.csv_header
        )
        records = iter_csv_records(
            iter_lines(body, max_line, strip_bom=at_start, position=position), max_record_bytes=max_line
        )
        if job_input.stop is not None:
            records = _records_until(records, position, job_input.stop)
        if at_start:
            first_record = next(records, None)
            if first_record is not None:
                is_header = csv_decoder.is_header(first_record)
                csv_header_found(is_header)
                if not is_header:
                    yield csv_decoder.chunk([first_record])
        while batch_records := list(islice(records, rows)):
            yield csv_decoder.chunk(batch_records)
    else:
        spec = single_row_spec(model.name, signature, "npy")
        header = job_input.npy_header or read_npy_header(body, file_bytes=job_input.size)
        check_npy_rows(spec, header, max_line)
        for first_row, array in npy_chunks(body, header, rows, first_row=job_input.first_row):
            yield npy_chunk(first_row, array, signature.inputs[0], max_string_bytes=max_string_bytes)
            position.lines += len(array)
            position.bytes += array.nbytes


def check_npy_rows(spec: RowSpec, header: NpyHeader, max_row_bytes: int) -> None:
    """An npy file's rows fit the model's one input, each within `max_row_bytes` (MAAS_MAX_REQUEST_BYTES)."""
    if header.row_bytes > max_row_bytes:
        # A row is read whole, so it is bounded as a jsonl line or a csv record is, before any read.
        raise MalformedJobInput(
            f"input.npy rows: expected at most {max_row_bytes} bytes a row (MAAS_MAX_REQUEST_BYTES), "
            f"got {header.row_bytes}"
        )
    spec.check(header.row_shape, "input.npy rows")


def shard_rows_header(header: NpyHeader, start: int, end: int) -> NpyHeader:
    """The header of the rows in bytes [start, end) of the file: what a shard's body holds."""
    return replace(header, rows=(end - start) // max(header.row_bytes, 1))


def _records_until(records: Iterator[CsvRecord], position: StreamPosition, stop: int) -> Iterator[CsvRecord]:
    """The records up to the first that ends at or past byte `stop`: a shard answers the records that start
    before its end, the last of them read to its own end. The csv reader takes a line at a time, so
    `position` stands at the end of the record just read."""
    if stop <= 0:
        return
    for record in records:
        yield record
        if position.bytes >= stop:
            return


def decoding_guarded(job: JobLocation, chunks: Iterator[RowChunk]) -> Iterator[RowChunk]:
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
