"""Where events read and write in the bucket, and the documents they leave there.

    <prefix>jobs/<model-ref>/<job-id>/input.<jsonl|csv|npy>   uploaded by the user; starts the job
    <prefix>jobs/<model-ref>/<job-id>/output.jsonl             one line per input line, in order
    <prefix>jobs/<model-ref>/<job-id>/status.json              written last: the job is finished
    <prefix>results/<request-id>.json                          an async request's response or error

A csv input's object metadata `csv-header: true|false` says whether its line 1 is a header; without it,
line 1 is a header only when it cannot be data (see maas.service.job_csv).

`<model-ref>` is any reference form (`name`, `name@alias`, `name/versions/<n>`), so a job key is parsed
from its right end. Job and request ids are single-use: the first result written wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field

from maas.errors import InvalidInput
from maas.registry.references import ModelRef, parse_ref

JOBS_FOLDER = "jobs"
RESULTS_FOLDER = "results"
INPUT_STEM = "input"
OUTPUT_NAME = "output.jsonl"
STATUS_NAME = "status.json"
InputFormat = Literal["jsonl", "csv", "npy"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("jsonl", "csv", "npy")
# The input object's metadata key (x-amz-meta-csv-header) that says whether a csv file's line 1 is a header.
CSV_HEADER_METADATA = "csv-header"
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ECHOED_KEY = 200


def validate_id(value: str, *, field: str) -> str:
    """Job and request ids become one key segment: no slashes, no dot-only names, at most 128 characters."""
    if not ID_PATTERN.fullmatch(value):
        shown = repr(value) if len(value) <= 64 else f"an id of {len(value)} characters"
        raise InvalidInput(
            f"{field}: expected 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit, "
            f"got {shown}"
        )
    return value


@dataclass(frozen=True, slots=True)
class JobLocation:
    """One batch job: its model reference, its id and its input's format, under a key prefix."""

    model: ModelRef
    job_id: str
    input_format: InputFormat
    prefix: str = ""
    # The reference as the key spells it ("m/versions/staging" and "m@staging" are one reference but two
    # folders): outputs go next to the input that was uploaded. None: the canonical spelling.
    model_path: str | None = None

    @property
    def folder(self) -> str:
        return f"{self.prefix}{JOBS_FOLDER}/{self.model_path or self.model}/{self.job_id}/"

    @property
    def input_key(self) -> str:
        return f"{self.folder}{INPUT_STEM}.{self.input_format}"

    @property
    def output_key(self) -> str:
        return self.folder + OUTPUT_NAME

    @property
    def status_key(self) -> str:
        return self.folder + STATUS_NAME

    @property
    def path(self) -> str:
        """What users name a job by: `<model-ref>/<job-id>`."""
        return f"{self.model_path or self.model}/{self.job_id}"

    @classmethod
    def from_input_key(cls, key: str, prefix: str = "") -> JobLocation:
        """Parse a job input key (already URL-decoded); InvalidInput says which part is wrong."""
        shown = key if len(key) <= MAX_ECHOED_KEY else key[:MAX_ECHOED_KEY] + "..."
        folder = f"{prefix}{JOBS_FOLDER}/"
        if not key.startswith(folder):
            raise InvalidInput(f"job key: expected it under {folder}, got {shown!r}")
        parts = key[len(folder) :].split("/")
        expected = f"{folder}<model-ref>/<job-id>/{INPUT_STEM}.<{'|'.join(INPUT_FORMATS)}>"
        if len(parts) < 3:
            raise InvalidInput(f"job key: expected {expected}, got {shown!r}")
        *model_parts, job_id, file_name = parts
        stem, _, extension = file_name.partition(".")
        if stem != INPUT_STEM or extension not in INPUT_FORMATS:
            raise InvalidInput(f"job key: expected {expected}, got {shown!r}")
        return cls._parsed("/".join(model_parts), job_id, extension, prefix)

    @classmethod
    def from_path(cls, path: str, input_format: InputFormat = "jsonl", prefix: str = "") -> JobLocation:
        """Parse `<model-ref>/<job-id>` as `maas jobs submit` prints it."""
        model_text, _, job_id = path.rpartition("/")
        if not model_text:
            raise InvalidInput(f"job: expected <model-ref>/<job-id>, got {path!r}")
        return cls._parsed(model_text, job_id, input_format, prefix)

    @classmethod
    def _parsed(cls, model_path: str, job_id: str, input_format: InputFormat, prefix: str) -> JobLocation:
        """A location from the parts of a key or path: the id checked, the reference kept as spelled."""
        validate_id(job_id, field="job id")
        return cls(
            model=parse_ref(model_path),
            job_id=job_id,
            input_format=input_format,
            prefix=prefix,
            model_path=model_path,
        )


def job_key_from_event(raw_key: str) -> str:
    """S3 notifications URL-encode keys the way HTML forms do ('+' for a space)."""
    return unquote_plus(raw_key)


def result_key(request_id: str, prefix: str = "") -> str:
    return f"{prefix}{RESULTS_FOLDER}/{validate_id(request_id, field='id')}.json"


# ---- documents


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


JobState = Literal["succeeded", "failed"]


class LineError(_Document):
    line: int = Field(description="1-based line (jsonl, csv) or row (npy) of the input.")
    error: str


class JobCounts(_Document):
    lines: int = Field(0, description="Input lines (or npy rows) read.")
    succeeded: int = 0
    failed: int = Field(0, description="Lines answered with an error instead of an output.")


class JobTokens(_Document):
    """A text generator's job: the tokens its answered lines used, as their `usage` fields count them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_budget_exhausted_lines: int = Field(
        0, description="Lines whose generation stopped at its time budget (finish_reason 'length')."
    )


class ShardSummary(_Document):
    """One shard of a sharded job, as status.json reports it (maas.service.shard_layout)."""

    index: int = Field(description="0-based position of the shard in the input.")
    start: int = Field(description="First input byte the shard read.")
    end: int = Field(description="The byte after the last record it consumed.")
    lines: int = Field(description="Input lines (or npy rows) it read.")
    succeeded: int
    failed: int
    seconds: float


class JobStatus(_Document):
    """status.json: written once, after output.jsonl, so its presence means the job is over."""

    job_id: str
    model: str = Field(description="The reference as given in the job's key.")
    model_name: str
    model_version: int | None = Field(
        None, description="The version that served every line; null when the job failed before resolving it."
    )
    state: JobState
    error: str | None = Field(None, description="Why the whole job failed (state 'failed').")
    input_key: str
    input_format: InputFormat
    input_bytes: int | None = None
    csv_header: bool | None = Field(
        None,
        description="csv: whether line 1 was read as a header (and so has no output line); null otherwise.",
    )
    output_key: str | None = Field(None, description="Null when the job failed before any output.")
    counts: JobCounts = Field(default_factory=JobCounts)
    errors: list[LineError] = Field(
        default_factory=list, description="The first line errors (all are in output.jsonl)."
    )
    started_at: datetime
    finished_at: datetime
    seconds: float
    rows_per_second: float | None = None
    tokens: JobTokens | None = Field(None, description="A text generator's job only.")
    shards: list[ShardSummary] | None = Field(
        None, description="A job run in shards (Step Functions): each shard's range, counts and time."
    )


class AsyncError(_Document):
    """results/<id>.json for a request that failed for good: a client mistake or a permanent server error."""

    # Built by the first failed request: the async function's imports need not pay for an error path.
    model_config = ConfigDict(defer_build=True)

    id: str
    model: str | None = None
    status: int = Field(description="The HTTP status the same request would have got.")
    error: str
