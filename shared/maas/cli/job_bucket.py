"""The bucket side of `maas jobs`: job folders listed and found, status read and waited for, the input
uploaded and the output downloaded (with progress bars on a terminal). Never imports torch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

    from maas.config import Settings
    from maas.service.job_layout import JobLocation, JobStatus

MIB = 1024 * 1024
# Below the threshold one PUT is cheapest; above it parts upload in parallel and retry one by one.
MULTIPART_THRESHOLD = 8 * MIB
MULTIPART_CHUNK = 8 * MIB
# Stays under the shared client's connection pool (aws_clients: 32), so parts never queue for a socket.
TRANSFER_CONCURRENCY = 8


def s3_client(settings: Settings) -> S3Client:
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


def folder_names(s3: S3Client, bucket: str, folder: str) -> set[str]:
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


def find_job(s3: S3Client, bucket: str, prefix: str, job_id: str) -> tuple[JobLocation, set[str]]:
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
        names = folder_names(s3, bucket, f"{folder}{job_id}/")
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


def with_stored_format(location: JobLocation, names: set[str]) -> JobLocation:
    """The location with the format of the input actually stored, so input_key names a real object."""
    from dataclasses import replace

    from maas.service.job_layout import INPUT_FORMATS, INPUT_STEM

    for input_format in INPUT_FORMATS:
        if f"{INPUT_STEM}.{input_format}" in names:
            return replace(location, input_format=input_format)
    return location


def read_status(s3: S3Client, bucket: str, key: str) -> JobStatus | None:
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


def wait_for_status(
    s3: S3Client,
    bucket: str,
    location: JobLocation,
    *,
    timeout: float | None,
    idle_timeout: float,
    poll: float,
) -> JobStatus:
    """Wait for status.json. With `timeout`, give up after that long. Without it, give up after
    `idle_timeout` with no sign of life: a job that runs in one invocation shows none (its limit is the
    function's), a sharded one shows every shard that starts or ends, so it is followed as long as it moves.
    A sharded job's progress is shown on stderr (maas.cli.job_progress)."""
    from maas.cli.job_progress import ProgressLine, ShardWatch

    started = time.monotonic()
    watch = ShardWatch(s3, bucket, location)
    line = ProgressLine(sys.stderr, f"job {location.path}")
    spinner: _Progress | None = _progress(f"waiting for {location.path}", None, bar_format="{desc} {elapsed}")
    try:
        while True:
            status = read_status(s3, bucket, location.status_key)
            if status is not None:
                return status
            progress = watch.poll()
            if progress is not None:
                if spinner is not None:
                    # The progress line takes the spinner's place.
                    spinner.close()
                    spinner = None
                line.show(progress)
            elif spinner is not None:
                spinner.refresh()
            now = time.monotonic()
            if timeout is not None:
                remaining = started + timeout - now
            else:
                remaining = max(started, watch.changed_at or started) + idle_timeout - now
            if remaining <= 0:
                raise _still_running(location, timeout, idle_timeout, sharded=progress is not None)
            time.sleep(min(poll, remaining))
    finally:
        if spinner is not None:
            spinner.close()
        line.close()


def _still_running(location: JobLocation, timeout: float | None, idle: float, *, sharded: bool) -> Exception:
    from maas.errors import MaasError

    if timeout is not None:
        waited = f"still running after {timeout:g} s"
    elif sharded:
        waited = f"still running, but no shard started or finished in {idle:g} s"
    else:
        waited = f"still running after {idle:g} s"
    return MaasError(
        f"job {location.path}: {waited} (no status.json yet); "
        f"it goes on: check it with `maas jobs status {location.path}`",
        status=504,
    )


def upload(s3: S3Client, source: Path, bucket: str, key: str, metadata: dict[str, str]) -> None:
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


def download(s3: S3Client, bucket: str, key: str, destination: Path) -> None:
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


# ---- progress bars


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
