"""`maas jobs ...`: submit batch jobs and follow them to their output. Never imports torch.

A job lives entirely in the bucket (see maas.service.job_layout): uploading its input starts it and its
status.json ends it, so these commands need only S3 access, not the API.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from maas.cli import common
from maas.config import Settings

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

    from maas.service.job_layout import InputFormat, JobLocation, JobStatus

# Lambda's 15-minute ceiling, plus a minute for the S3 notification to reach the function through SQS.
DEFAULT_TIMEOUT_SECONDS = 15 * 60 + 60
DEFAULT_POLL_SECONDS = 1.0
MIB = 1024 * 1024
# Below the threshold one PUT is cheapest; above it parts upload in parallel and retry one by one.
MULTIPART_THRESHOLD = 8 * MIB
MULTIPART_CHUNK = 8 * MIB
# Stays under the shared client's connection pool (aws_clients: 32), so parts never queue for a socket.
TRANSFER_CONCURRENCY = 8
SHOWN_ERRORS = 5

JobView = Literal["pending", "not found", "succeeded", "failed"]


def add_jobs_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], output: argparse.ArgumentParser
) -> None:
    jobs = commands.add_parser("jobs", help="run batch jobs: upload a file, get one output line per line")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    submit = jobs_commands.add_parser(
        "submit",
        parents=[output],
        help="upload FILE as a job's input, wait for the job and download its output",
    )
    submit.add_argument("file", metavar="FILE", type=Path, help="the input: a .jsonl, .csv or .npy file")
    submit.add_argument(
        "--model",
        required=True,
        metavar="REF",
        help="name, name@alias, name/versions/<n> or name/versions/<alias>",
    )
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
        type=Path,
        metavar="PATH",
        help="where to download the output (default: <FILE stem>.out.jsonl next to FILE)",
    )
    submit.add_argument(
        "--timeout",
        type=_seconds,
        default=float(DEFAULT_TIMEOUT_SECONDS),
        metavar="SECONDS",
        help=f"stop waiting after this long; the job goes on (default: {DEFAULT_TIMEOUT_SECONDS})",
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
    destination = _destination(source, args.out, wait=not args.no_wait)

    settings = Settings.from_env()
    s3 = _s3(settings)
    bucket = settings.bucket
    location = JobLocation(model=model, job_id=job_id, input_format=input_format, prefix=settings.prefix)
    used = _folder_names(s3, bucket, location.folder)
    if used:
        # Checked, not enforced: S3's conditional writes cannot guard a managed (multipart) upload, and a
        # second input of another format would be another key anyway. Random default ids make it moot.
        raise InvalidInput(
            f"--job-id: expected an unused id, got {job_id!r}, already used by job {location.path} "
            f"(s3://{bucket}/{location.folder} holds {', '.join(sorted(used))}); job ids are single-use",
            status=409,
        )
    metadata = {} if csv_header is None else {CSV_HEADER_METADATA: "true" if csv_header else "false"}
    _upload(s3, source, bucket, location.input_key, metadata)
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
        status = _wait_for_status(s3, bucket, location, timeout=args.timeout, poll=args.poll)
    except KeyboardInterrupt:
        print(
            f"\nstopped waiting; job {location.path} goes on: maas jobs status {location.path}",
            file=sys.stderr,
        )
        return 130
    output_path = None
    if status.output_key is not None:
        _download(s3, bucket, status.output_key, destination)
        output_path = destination
    return _print_finished(args, location, bucket, status, output_path)


def _destination(source: Path, out: Path | None, *, wait: bool) -> Path | None:
    """Where the output goes: None without waiting. Checked before uploading, not after a long job."""
    from maas.errors import InvalidInput

    if not wait:
        if out is not None:
            raise InvalidInput("--out: expected only when waiting (nothing is downloaded with --no-wait)")
        return None
    default_name = f"{source.stem}.out.jsonl"
    destination = out if out is not None else source.with_name(default_name)
    if destination.is_dir():
        destination = destination / default_name
    if not destination.parent.is_dir():
        raise InvalidInput(f"--out: expected a path in an existing folder, got {str(destination)!r}")
    if destination.resolve() == source.resolve():
        raise InvalidInput(f"--out: expected a path other than FILE, got {str(destination)!r}")
    return destination


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
    from maas.service.job_layout import STATUS_NAME, JobLocation

    settings = Settings.from_env()
    s3 = _s3(settings)
    bucket = settings.bucket
    if "/" in args.job:
        location = JobLocation.from_path(args.job, prefix=settings.prefix)
        names = _folder_names(s3, bucket, location.folder)
    else:
        location, names = _find_job(s3, bucket, settings.prefix, args.job)
    location = _with_stored_format(location, names)
    status = _read_status(s3, bucket, location.status_key) if STATUS_NAME in names else None
    state: JobView = status.state if status is not None else "pending" if names else "not found"

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
        common.print_json(document)
        return 1 if state == "not found" else 0

    rows = [("job", location.path), ("state", state), ("model", str(location.model))]
    if status is None:
        if names:
            rows.append(("input", f"s3://{bucket}/{location.input_key}"))
        print(common.table(rows))
        return 1 if state == "not found" else 0
    counts = status.counts
    rows += [
        ("version", str(status.model_version) if status.model_version is not None else "-"),
        ("lines", f"{counts.lines} ({counts.succeeded} succeeded, {counts.failed} failed)"),
    ]
    if status.csv_header is not None:
        rows.append(("header", "line 1 (no output line)" if status.csv_header else "none"))
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


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite, non-negative number of seconds, got {text!r}")
    return seconds


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


# ---- the bucket


def _s3(settings: Settings) -> S3Client:
    from maas import aws_clients

    return aws_clients.s3_transfer_client(settings.endpoint_url)


def _transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNK,
        max_concurrency=TRANSFER_CONCURRENCY,
    )


def _storage_error(action: str, exc: Exception) -> Exception:
    from maas.errors import Unavailable

    return Unavailable(f"{action}: {exc}")


def _folder_names(s3: S3Client, bucket: str, folder: str) -> set[str]:
    """The objects directly in a folder; a job folder holds at most input, output and status."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = s3.list_objects_v2(Bucket=bucket, Prefix=folder, Delimiter="/")
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(f"listing s3://{bucket}/{folder}", exc) from None
    return {item["Key"][len(folder) :] for item in response.get("Contents", [])}


def _subfolders(s3: S3Client, bucket: str, folder: str) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    found: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder, Delimiter="/"):
            found += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(f"listing s3://{bucket}/{folder}", exc) from None
    return found


def _find_job(s3: S3Client, bucket: str, prefix: str, job_id: str) -> tuple[JobLocation, set[str]]:
    """Resolve a bare job id by probing every model-ref folder under jobs/ for it."""
    from maas.errors import InvalidInput, MaasError, NotFound
    from maas.registry.references import parse_ref
    from maas.service.job_layout import JOBS_FOLDER, JobLocation, validate_id

    validate_id(job_id, field="job id")
    root = f"{prefix}{JOBS_FOLDER}/"
    model_folders: list[str] = []
    for folder in _subfolders(s3, bucket, root):
        model_folders.append(folder)
        if "@" not in folder[len(root) :]:
            # Pinned references (name/versions/<n>) nest two levels deeper than name and name@alias.
            model_folders += _subfolders(s3, bucket, f"{folder}versions/")
    found: list[tuple[JobLocation, set[str]]] = []
    for folder in model_folders:
        try:
            model = parse_ref(folder[len(root) :].rstrip("/"))
        except MaasError:
            continue  # not a job folder: something else stored under jobs/
        names = _folder_names(s3, bucket, f"{folder}{job_id}/")
        if names:
            found.append(
                (JobLocation(model=model, job_id=job_id, input_format="jsonl", prefix=prefix), names)
            )
    if not found:
        raise NotFound(f"job {job_id!r}: not found under s3://{bucket}/{root} (no model folder holds it)")
    if len(found) > 1:
        paths = ", ".join(location.path for location, _ in found)
        raise InvalidInput(
            f"job {job_id!r}: expected it under one model, got {len(found)} ({paths}); "
            "name it as <model-ref>/<job-id>"
        )
    return found[0]


def _with_stored_format(location: JobLocation, names: set[str]) -> JobLocation:
    """The location with the format of the input actually stored, so input_key names a real object."""
    from dataclasses import replace

    from maas.service.job_layout import INPUT_FORMATS, INPUT_STEM

    for input_format in INPUT_FORMATS:
        if f"{INPUT_STEM}.{input_format}" in names:
            return replace(location, input_format=input_format)
    return location


def _read_status(s3: S3Client, bucket: str, key: str) -> JobStatus | None:
    """The job's status.json, or None while the job runs."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pydantic import ValidationError

    from maas.errors import MaasError
    from maas.service.job_layout import JobStatus

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise _storage_error(f"reading s3://{bucket}/{key}", exc) from None
    except BotoCoreError as exc:
        raise _storage_error(f"reading s3://{bucket}/{key}", exc) from None
    try:
        return JobStatus.model_validate_json(body)
    except ValidationError as exc:
        raise MaasError(
            f"s3://{bucket}/{key}: expected a job status document, got one with {exc.error_count()} "
            "invalid or missing fields"
        ) from None


def _wait_for_status(
    s3: S3Client, bucket: str, location: JobLocation, *, timeout: float, poll: float
) -> JobStatus:
    from maas.errors import MaasError

    deadline = time.monotonic() + timeout
    spinner = _progress(f"waiting for {location.path}", None, bar_format="{desc} {elapsed}")
    try:
        while True:
            status = _read_status(s3, bucket, location.status_key)
            if status is not None:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MaasError(
                    f"job {location.path}: still running after {timeout:g} s (no status.json yet); "
                    f"it goes on: check it with `maas jobs status {location.path}`",
                    status=504,
                )
            spinner.refresh()
            time.sleep(min(poll, remaining))
    finally:
        spinner.close()


def _upload(s3: S3Client, source: Path, bucket: str, key: str, metadata: dict[str, str]) -> None:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    bar = _progress(f"upload {source.name}", source.stat().st_size)
    try:
        s3.upload_file(
            str(source),
            bucket,
            key,
            ExtraArgs={"Metadata": metadata} if metadata else None,
            Config=_transfer_config(),
            Callback=bar.update,
        )
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise _storage_error(f"uploading {source} to s3://{bucket}/{key}", exc) from None
    finally:
        bar.close()


def _download(s3: S3Client, bucket: str, key: str, destination: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        bar = _progress(f"download {destination.name}", size)
        try:
            # download_file writes a temporary file and renames it, so a failure leaves no partial output.
            s3.download_file(bucket, key, str(destination), Config=_transfer_config(), Callback=bar.update)
        finally:
            bar.close()
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(f"downloading s3://{bucket}/{key} to {destination}", exc) from None
    except OSError as exc:
        from maas.errors import MaasError

        raise MaasError(
            f"--out: could not write {destination} ({exc.strerror or exc}); the output stays at s3://{bucket}/{key}"
        ) from None


# ---- output


class _Progress(Protocol):
    def update(self, n: float = 1) -> object: ...
    def refresh(self) -> object: ...
    def close(self) -> object: ...


class _NoProgress:
    def update(self, n: float = 1) -> object:
        return None

    def refresh(self) -> object:
        return None

    def close(self) -> object:
        return None


def _progress(desc: str, total: float | None, **options: Any) -> _Progress:
    """A tqdm bar on stderr, or nothing where tqdm is not installed (it is no runtime dependency)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    bar: _Progress = tqdm(
        desc=desc,
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        # None: no bar when stderr is not a terminal, so logs and CI output get no carriage-return noise.
        disable=None,
        leave=False,
        **options,
    )
    return bar


def _summary(status: JobStatus) -> str:
    version = f" v{status.model_version}" if status.model_version is not None else ""
    text = f"{status.state}: {status.model_name}{version}, {status.counts.lines} lines"
    if status.counts.failed:
        text += f", {status.counts.failed} failed"
    return f"{text}, {status.seconds:.1f} s"


def _error_lines(status: JobStatus) -> list[str]:
    if not status.errors:
        return []
    shown = status.errors[:SHOWN_ERRORS]
    lines = [f"first errors ({len(shown)} of {status.counts.failed}):" if status.counts.failed else "errors:"]
    return lines + [f"  line {error.line}: {error.error}" for error in shown]
