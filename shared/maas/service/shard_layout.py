"""Where a sharded job's steps read and write in the bucket, and the documents they leave there.

All under the job's folder (maas.service.job_layout.JobLocation.folder):

    shards/plan.json                         JobPlan, create-only, written by the plan step
    shards/round-<n>.json                    JSON array of ShardTask: the Map's items for round n
    shards/<index:05d>-<start>.started       empty marker a shard writes when it begins (progress only)
    shards/<index:05d>-<start>.jsonl         the shard's output lines, create-only
    shards/<index:05d>-<start>.json          ShardResult, create-only, written after the output
    shards/<index:05d>-<start>.failed.json   ShardFailure: the shard failed for good
    shards/<index:05d>-<start>.from-<first_line>.jsonl   the output with error lines renumbered
    shards/<index:05d>-<start>.from-<first_line>.failed.json   ShardFailure: renumbering it failed for good
    output.jsonl                             the shards' outputs stitched in order, create-only
    status.json                              written last (JobStatus, with `shards`)

A shard is named by its index and its first input byte: when the merge finds that a csv cut was not a
record boundary, the shard runs again from the true start under a new name, and nothing written under the
old one is ever mistaken for it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from maas.service.job_layout import (
    InputFormat,
    JobCounts,
    JobLocation,
    JobTokens,
    LineError,
    ShardSummary,
)

__all__ = [
    "EXECUTION_NAME_ID_CHARS",
    "PLAN_NAME",
    "SHARDS_FOLDER",
    "JobPlan",
    "ShardFailure",
    "ShardKeys",
    "ShardObject",
    "ShardResult",
    "ShardSummary",
    "ShardTask",
    "execution_name",
    "shard_object",
]

SHARDS_FOLDER = "shards"
PLAN_NAME = "plan.json"
# Step Functions execution names: at most 80 characters of [A-Za-z0-9_-]; 40 of them the job id.
EXECUTION_NAME_ID_CHARS = 40
_EXECUTION_NAME_HASH_CHARS = 32
_NOT_IN_EXECUTION_NAME = re.compile(r"[^A-Za-z0-9_-]")

ShardObjectKind = Literal["started", "output", "result", "failed", "renumbered", "renumber_failed"]
_SHARD_OBJECT = re.compile(
    r"(?P<index>\d{5,})-(?P<start>\d+)"
    r"(?:(?P<suffix>\.started|\.jsonl|\.json|\.failed\.json)"
    r"|\.from-(?P<first_line>\d+)(?P<renumber_suffix>\.jsonl|\.failed\.json))"
)
_KINDS: dict[str, ShardObjectKind] = {
    ".started": "started",
    ".jsonl": "output",
    ".json": "result",
    ".failed.json": "failed",
}
_RENUMBER_KINDS: dict[str, ShardObjectKind] = {".jsonl": "renumbered", ".failed.json": "renumber_failed"}


class _ShardDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShardTask(_ShardDocument):
    """One item of a round: the input bytes one shard answers."""

    index: int = Field(ge=0, description="0-based position of the shard in the input.")
    start: int = Field(ge=0, description="First input byte of the shard's first record.")
    end: int = Field(
        ge=0,
        description="The shard answers the records that start in [start, end); csv may read past `end` to "
        "finish its last record.",
    )
    first_row: int = Field(
        1, ge=1, description="npy: the global number of the shard's first row; jsonl and csv: 1 (local)."
    )
    renumber_from: int | None = Field(
        None,
        ge=1,
        description="Set: do not run the model; rewrite the shard's existing output so that its local line "
        "L becomes L + renumber_from - 1 in its error lines.",
    )


class ShardResult(_ShardDocument):
    """<index>-<start>.json: the shard is done; written after its output."""

    index: int
    start: int
    end: int = Field(description="The byte after the last record the shard consumed.")
    lines: int = Field(description="Physical input lines consumed (npy: rows).")
    counts: JobCounts
    errors: list[LineError] = Field(default_factory=list, description="The first errors, local numbers.")
    error_lines: int = Field(0, description="Output lines that are errors.")
    output_key: str | None = None
    output_bytes: int = 0
    csv_header: bool | None = None
    tokens: JobTokens | None = None
    started_at: datetime
    finished_at: datetime
    seconds: float


class ShardFailure(_ShardDocument):
    """<index>-<start>.failed.json: the shard failed for good (after its retries, or a malformed input)."""

    index: int
    start: int
    end: int
    error_type: str
    error: str = Field(description="As the shard saw it: a line it names is numbered from the shard's start.")
    line: int | None = Field(
        None,
        ge=1,
        description="The line the error names, from 1 at the shard's start (npy: the global row); None: "
        "it names none.",
    )
    error_template: str | None = Field(
        None,
        description="With `line`: the error with {line} where the line's number goes (job_rows.AtLine), so "
        "that the merge tells it with the line's number in the whole input.",
    )
    failed_at: datetime


class JobPlan(_ShardDocument):
    """shards/plan.json: the job as the plan step found it, and its round-0 shards."""

    job_id: str
    input_key: str
    input_format: InputFormat
    input_bytes: int
    input_etag: str | None = Field(
        None,
        description="The input object's ETag when planned: every read of the job's is of that object alone "
        "(the plan step always sets it; None only in a plan written before inputs were pinned).",
    )
    model_name: str
    model_version: int
    generates_text: bool
    shard_bytes: int
    shards: list[ShardTask]
    csv_header: bool | None = Field(None, description="The input's csv-header metadata, if set.")
    npy_data_offset: int | None = None
    npy_row_bytes: int | None = None
    npy_rows: int | None = None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The keys of one job's sharded run, under its folder (`jobs/<model-ref>/<job-id>/`)."""

    folder: str

    @classmethod
    def for_job(cls, job: JobLocation) -> ShardKeys:
        return cls(job.folder)

    @property
    def shards_folder(self) -> str:
        return f"{self.folder}{SHARDS_FOLDER}/"

    @property
    def plan(self) -> str:
        return self.shards_folder + PLAN_NAME

    def round(self, number: int) -> str:
        return f"{self.shards_folder}round-{number}.json"

    def started(self, index: int, start: int) -> str:
        return f"{self._stem(index, start)}.started"

    def output(self, index: int, start: int) -> str:
        return f"{self._stem(index, start)}.jsonl"

    def result(self, index: int, start: int) -> str:
        return f"{self._stem(index, start)}.json"

    def failure(self, index: int, start: int) -> str:
        return f"{self._stem(index, start)}.failed.json"

    def renumbered(self, index: int, start: int, first_line: int) -> str:
        return f"{self._stem(index, start)}.from-{first_line}.jsonl"

    def renumber_failure(self, index: int, start: int, first_line: int) -> str:
        return f"{self._stem(index, start)}.from-{first_line}.failed.json"

    def _stem(self, index: int, start: int) -> str:
        return f"{self.shards_folder}{index:05d}-{start}"


@dataclass(frozen=True, slots=True)
class ShardObject:
    """What a key under shards/ is: which shard (index, start) and which of its objects."""

    index: int
    start: int
    kind: ShardObjectKind
    first_line: int | None = None


def shard_object(key: str) -> ShardObject | None:
    """The shard object a key (or its last segment) names; None for plan.json, round-<n>.json and others."""
    match = _SHARD_OBJECT.fullmatch(key.rpartition("/")[2])
    if match is None:
        return None
    first_line = match["first_line"]
    kind = _RENUMBER_KINDS[match["renumber_suffix"]] if first_line is not None else _KINDS[match["suffix"]]
    return ShardObject(
        int(match["index"]), int(match["start"]), kind, int(first_line) if first_line is not None else None
    )


def execution_name(job_id: str, input_key: str) -> str:
    """The Step Functions execution of a job: the same for every delivery of its event, so a duplicate
    starts nothing (StartExecution answers with the running execution, or ExecutionAlreadyExists)."""
    readable = _NOT_IN_EXECUTION_NAME.sub("", job_id)[:EXECUTION_NAME_ID_CHARS]
    digest = hashlib.sha256(input_key.encode()).hexdigest()[:_EXECUTION_NAME_HASH_CHARS]
    return f"{readable}-{digest}"
