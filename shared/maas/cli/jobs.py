"""`maas jobs ...`: submit batch jobs and follow them to their output. Never imports torch.

A job lives entirely in the bucket (see maas.service.job_layout): uploading its input starts it and its
status.json ends it, so these commands need only S3 access (maas.cli.job_bucket), not the API.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from maas.cli import common, job_bucket
from maas.config import Settings

if TYPE_CHECKING:
    from maas.cli.job_progress import ShardProgress
    from maas.errors import InvalidInput
    from maas.service.job_layout import InputFormat, JobLocation, JobStatus, ShardSummary

# Lambda's 15-minute ceiling, plus a minute for the S3 notification to reach the function through SQS: the
# longest a job run in one invocation can take, and the longest one step of a sharded job can.
DEFAULT_TIMEOUT_SECONDS = 15 * 60 + 60
DEFAULT_POLL_SECONDS = 1.0
SHOWN_ERRORS = 5

# "running": a sharded job whose plan is written and whose status is not yet.
JobView = Literal["pending", "running", "not found", "succeeded", "failed"]


def add_jobs_commands(commands: common.Commands, output: argparse.ArgumentParser) -> None:
    jobs_commands = common.add_command_group(
        commands, "jobs", help="run batch jobs: upload a file, get one output line per line"
    )

    submit = jobs_commands.add_parser(
        "submit",
        parents=[output],
        help="upload FILE as a job's input, wait for the job and download its output",
    )
    submit.add_argument("file", metavar="FILE", type=Path, help="the input: a .jsonl, .csv or .npy file")
    common.add_model_reference(submit, "--model", required=True)
    submit.add_argument("--job-id", metavar="ID", help="a new, unused id (default: a random one)")
    submit.add_argument(
        "--csv-header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a .csv FILE's line 1 is (or with --no-csv-header, is not) a header; by default it is one "
        "only when every cell is a column name (never a number, an empty cell or NA), for numeric models",
    )
    submit.add_argument(
        "--no-wait", action="store_true", help="print the job and return once the input is uploaded"
    )
    submit.add_argument(
        "--out",
        "--output",
        type=Path,
        metavar="PATH",
        help="where to download the output (default: <FILE stem>.out.jsonl next to FILE); an existing file "
        "is refused before anything is submitted, unless --overwrite",
    )
    submit.add_argument(
        "--overwrite", action="store_true", help="replace the output file when it already exists"
    )
    submit.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"stop waiting after this long; the job goes on (default: after {DEFAULT_TIMEOUT_SECONDS} s "
        "for a job run in one invocation; a sharded job is followed until no shard has started or "
        f"finished for {DEFAULT_TIMEOUT_SECONDS} s)",
    )
    submit.add_argument(
        "--poll",
        type=_positive_seconds,
        default=DEFAULT_POLL_SECONDS,
        metavar="SECONDS",
        help=f"how often to look for the job's status (default: {DEFAULT_POLL_SECONDS:g})",
    )
    submit.set_defaults(command=jobs_submit_command)

    status = jobs_commands.add_parser(
        "status", parents=[output], help="print a job's state, counts, first errors and output"
    )
    status.add_argument("job", metavar="JOB", help="<model-ref>/<job-id> as submit prints it, or a job id")
    status.set_defaults(command=jobs_status_command)


def jobs_submit_command(args: argparse.Namespace) -> int:
    from uuid import uuid4

    from maas.errors import InvalidInput, NotFound
    from maas.registry.references import parse_ref
    from maas.service.job_layout import CSV_HEADER_METADATA, JobLocation, validate_id

    source: Path = args.file
    input_format = _input_format(source)
    csv_header: bool | None = args.csv_header
    if csv_header is not None and input_format != "csv":
        flag = "--csv-header" if csv_header else "--no-csv-header"
        raise InvalidInput(f"{flag}: expected only with a .csv FILE, got a .{input_format} one")
    model = parse_ref(args.model)
    job_id = validate_id(args.job_id, field="--job-id") if args.job_id is not None else uuid4().hex
    if not source.is_file():
        raise NotFound(f"FILE: expected a readable file, got {str(source)!r} (no such file)")
    destination = _destination(source, args.out, wait=not args.no_wait, overwrite=args.overwrite)

    settings = Settings.from_env()
    s3 = job_bucket.s3_client(settings)
    bucket = settings.bucket
    location = JobLocation(model=model, job_id=job_id, input_format=input_format, prefix=settings.prefix)
    used = job_bucket.folder_names(s3, bucket, location.folder)
    if used:
        # Checked, not enforced: S3's conditional writes cannot guard a managed (multipart) upload, and a
        # second input of another format would be another key anyway. Random default ids make it moot.
        raise InvalidInput(
            f"--job-id: expected an unused id, got {job_id!r}, already used by job {location.path} "
            f"(s3://{bucket}/{location.folder} holds {', '.join(sorted(used))}); job ids are single-use",
            status=409,
        )
    metadata = {} if csv_header is None else {CSV_HEADER_METADATA: "true" if csv_header else "false"}
    job_bucket.upload(s3, source, bucket, location.input_key, metadata)
    if args.json:
        print(f"# submitted {location.path}", file=sys.stderr, flush=True)
    else:
        # Printed before waiting, so another shell can follow the job with `maas jobs status`.
        print(location.path, flush=True)

    if destination is None:
        if args.json:
            return common.print_json(
                {
                    "job": location.path,
                    "bucket": bucket,
                    "state": "pending",
                    "model": str(model),
                    "job_id": job_id,
                    "input_key": location.input_key,
                    "input_bytes": source.stat().st_size,
                }
            )
        return 0

    try:
        status = job_bucket.wait_for_status(
            s3, bucket, location, timeout=args.timeout, idle_timeout=DEFAULT_TIMEOUT_SECONDS, poll=args.poll
        )
    except KeyboardInterrupt:
        print(
            f"\nstopped waiting; job {location.path} goes on: maas jobs status {location.path}",
            file=sys.stderr,
        )
        return 130
    output_path = None
    if status.output_key is not None:
        if not args.overwrite and destination.exists():
            # Something wrote it while the job ran: still not ours to replace.
            raise _output_exists(destination, f"; the output stays at s3://{bucket}/{status.output_key}")
        job_bucket.download(s3, bucket, status.output_key, destination)
        output_path = destination
    return _print_finished(args, location, bucket, status, output_path)


def _destination(source: Path, out: Path | None, *, wait: bool, overwrite: bool) -> Path | None:
    """Where the output goes: None without waiting. Checked before uploading, not after a long job, so a
    second job never silently replaces the first one's output."""
    from maas.errors import InvalidInput

    if not wait:
        if out is not None or overwrite:
            flag = "--out" if out is not None else "--overwrite"
            raise InvalidInput(f"{flag}: expected only when waiting (nothing is downloaded with --no-wait)")
        return None
    default_name = f"{source.stem}.out.jsonl"
    destination = out if out is not None else source.with_name(default_name)
    if destination.is_dir():
        destination = destination / default_name
    if not destination.parent.is_dir():
        raise InvalidInput(f"--out: expected a path in an existing folder, got {str(destination)!r}")
    if destination.resolve() == source.resolve():
        raise InvalidInput(f"--out: expected a path other than FILE, got {str(destination)!r}")
    if destination.exists() and not overwrite:
        raise _output_exists(destination, "; nothing was submitted")
    return destination


def _output_exists(destination: Path, outcome: str) -> InvalidInput:
    from maas.errors import InvalidInput

    return InvalidInput(
        f"--out: expected a file that does not exist yet, got {str(destination)!r}, which does{outcome}: "
        "name another with --out PATH, or replace it with --overwrite",
        status=409,
    )


def _print_finished(
    args: argparse.Namespace,
    location: JobLocation,
    bucket: str,
    status: JobStatus,
    output_path: Path | None,
) -> int:
    """Exit 0 for a job that succeeded, even with failed lines (they are data); 1 for a failed job."""
    failed = status.state == "failed"
    if args.json:
        common.print_json(
            {
                "job": location.path,
                "bucket": bucket,
                **status.model_dump(mode="json"),
                "output_path": str(output_path) if output_path is not None else None,
            }
        )
        return 1 if failed else 0
    print(_summary(status))
    if output_path is not None:
        print(f"output: {output_path}")
    for line in _error_lines(status):
        print(line)
    if failed:
        print(f"error: job {location.path} failed: {status.error or 'no reason given'}", file=sys.stderr)
        return 1
    return 0


def jobs_status_command(args: argparse.Namespace) -> int:
    from maas.cli.job_progress import ShardWatch
    from maas.service.job_layout import STATUS_NAME, JobLocation

    settings = Settings.from_env()
    s3 = job_bucket.s3_client(settings)
    bucket = settings.bucket
    if "/" in args.job:
        location = JobLocation.from_path(args.job, prefix=settings.prefix)
        names = job_bucket.folder_names(s3, bucket, location.folder)
    else:
        location, names = job_bucket.find_job(s3, bucket, settings.prefix, args.job)
    location = job_bucket.with_stored_format(location, names)
    status = job_bucket.read_status(s3, bucket, location.status_key) if STATUS_NAME in names else None
    watch = ShardWatch(s3, bucket, location)
    progress = watch.poll() if status is None and names else None
    state: JobView
    if status is not None:
        state = status.state
    elif progress is not None:
        state = "running"
    else:
        state = "pending" if names else "not found"

    if args.json:
        document: dict[str, Any] = {"job": location.path, "bucket": bucket}
        if status is not None:
            document.update(status.model_dump(mode="json"))
        else:
            document.update(
                state=state,
                model=str(location.model),
                job_id=location.job_id,
                input_key=location.input_key if names else None,
            )
            if progress is not None:
                document["progress"] = progress.as_json()
        common.print_json(document)
        return 1 if state == "not found" else 0

    rows = [("job", location.path), ("state", state), ("model", str(location.model))]
    if status is None:
        if names:
            rows.append(("input", f"s3://{bucket}/{location.input_key}"))
        if progress is not None and watch.plan is not None:
            rows += _progress_rows(watch.plan.model_version, progress)
        print(common.table(rows))
        return 1 if state == "not found" else 0
    counts = status.counts
    rows += [
        ("version", str(status.model_version) if status.model_version is not None else "-"),
        ("lines", f"{counts.lines} ({counts.succeeded} succeeded, {counts.failed} failed)"),
    ]
    if status.csv_header is not None:
        rows.append(("header", "line 1 (no output line)" if status.csv_header else "none"))
    if status.shards:
        rows.append(("shards", _shards_summary(status.shards)))
    rows += [
        ("seconds", f"{status.seconds:.1f}"),
        ("finished", status.finished_at.isoformat()),
        ("output", f"s3://{bucket}/{status.output_key}" if status.output_key else "-"),
    ]
    if status.error:
        rows.append(("error", status.error))
    print(common.table(rows))
    for line in _error_lines(status):
        print(line)
    return 0


# ---- arguments


_seconds = common.non_negative("number of seconds")


def _positive_seconds(text: str) -> float:
    seconds = _seconds(text)
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _input_format(source: Path) -> InputFormat:
    from maas.errors import InvalidInput
    from maas.service.job_layout import INPUT_FORMATS

    extension = source.suffix.lower().removeprefix(".")
    for input_format in INPUT_FORMATS:
        if extension == input_format:
            return input_format
    accepted = ", ".join(f".{f}" for f in INPUT_FORMATS)
    got = f"'{source.suffix}'" if source.suffix else "no extension"
    raise InvalidInput(f"FILE: expected one of {accepted}, got {got} ({source.name!r})")


# ---- output


def _summary(status: JobStatus) -> str:
    version = f" v{status.model_version}" if status.model_version is not None else ""
    text = f"{status.state}: {status.model_name}{version}, {status.counts.lines} lines"
    if status.counts.failed:
        text += f", {status.counts.failed} failed"
    return f"{text}, {status.seconds:.1f} s"


def _progress_rows(model_version: int, progress: ShardProgress) -> list[tuple[str, str]]:
    return [
        ("version", str(model_version)),
        (
            "shards",
            f"{progress.done}/{progress.shards} done, {progress.running} running, {progress.failed} failed, "
            f"{progress.waiting} waiting",
        ),
        ("rows", f"{progress.rows:,} so far, {progress.rows_per_second:,.0f} rows/s"),
        ("seconds", f"{progress.seconds:.1f}"),
    ]


def _shards_summary(shards: list[ShardSummary]) -> str:
    """`40, slowest 12.3 s (shard 17)`: the slowest shard bounds the job's wall time."""
    slowest = max(shards, key=lambda shard: shard.seconds)
    return f"{len(shards)}, slowest {slowest.seconds:.1f} s (shard {slowest.index})"


def _error_lines(status: JobStatus) -> list[str]:
    if not status.errors:
        return []
    shown = status.errors[:SHOWN_ERRORS]
    lines = [f"first errors ({len(shown)} of {status.counts.failed}):" if status.counts.failed else "errors:"]
    return lines + [f"  line {error.line}: {error.error}" for error in shown]
