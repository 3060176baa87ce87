"""The kept local store under strain: more objects than the process may open files, a crash right after an
acknowledged job input, a lost body file, and the order in which a save makes new bodies durable."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from maas.local.object_store import EmbeddedStore, ensure_bucket
from maas.local.process_environment import EnvironmentPatch
from maas.local.store_state import OBJECTS_FOLDER, S3_FILE, store_folder
from maas.registry import ModelRegistry
from maas.training import TrainedModel, publish_trained
from tests.integration.store_process import StoreProcess
from tests.integration.waiting import eventually
from tests.support.s3_objects import read_object

OPEN_FILES = 256
OBJECTS = 400
BUCKET = "kept"


def test_more_objects_than_the_open_files_limit_are_stored_and_restored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = StoreProcess(data_dir, open_files=OPEN_FILES)
    try:
        for index in range(OBJECTS):
            first.s3.put_object(Bucket=first.bucket, Key=f"objects/{index}", Body=f"body {index}".encode())
    finally:
        assert first.stop() == 0

    again = StoreProcess(data_dir, open_files=OPEN_FILES)
    try:
        listed = again.s3.get_paginator("list_objects_v2").paginate(Bucket=again.bucket, Prefix="objects/")
        assert sum(len(page.get("Contents", [])) for page in listed) == OBJECTS
        for index in range(OBJECTS):
            body = again.s3.get_object(Bucket=again.bucket, Key=f"objects/{index}")["Body"].read()
            assert body == f"body {index}".encode()
        again.s3.put_object(Bucket=again.bucket, Key="one-more", Body=b"still writable")
    finally:
        assert again.stop() == 0


def test_a_job_input_acknowledged_just_before_a_crash_runs_after_the_restart(
    seed_model: TrainedModel, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    job_folder = f"jobs/seed-mlp/job-{uuid.uuid4().hex[:12]}/"
    first = StoreProcess(data_dir, stack=True)
    try:
        publish_trained(seed_model, ModelRegistry(first.s3, first.bucket))
        first.s3.put_object(
            Bucket=first.bucket, Key=job_folder + "input.jsonl", Body=b"[" + b"0.5," * 9 + b"0.5]\n"
        )
    finally:
        first.kill()

    again = StoreProcess(data_dir, stack=True)
    try:
        status = eventually(lambda: read_object(again.s3, again.bucket, job_folder + "status.json"), "status")
        assert json.loads(status)["state"] == "succeeded", status
    finally:
        assert again.stop() == 0


class KeptStore:
    """An EmbeddedStore of this process on `data_dir`, with a bucket and an S3 client."""

    def __init__(self, data_dir: Path) -> None:
        self.environment = EnvironmentPatch()
        self.store = EmbeddedStore(self.environment, data_dir=data_dir)
        endpoint = self.store.start()
        self.s3: Any = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        ensure_bucket(self.s3, BUCKET)

    def stop(self) -> None:
        self.store.stop()
        self.environment.restore()


def test_a_lost_body_file_drops_that_object_with_a_warning_and_keeps_the_rest(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    objects = store_folder(data_dir) / OBJECTS_FOLDER
    kept = KeptStore(data_dir)
    try:
        kept.s3.put_object(Bucket=BUCKET, Key="kept", Body=b"kept")
        before = set(objects.iterdir())
        kept.s3.put_object(Bucket=BUCKET, Key="lost", Body=b"lost")
        (lost_body,) = set(objects.iterdir()) - before
    finally:
        kept.stop()
    lost_body.unlink()

    with caplog.at_level(logging.WARNING, logger="maas.local.store_state"):
        again = KeptStore(data_dir)
    try:
        assert again.s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == b"kept"
        with pytest.raises(ClientError) as missing:
            again.s3.get_object(Bucket=BUCKET, Key="lost")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert f"s3://{BUCKET}/lost" in warnings[0] and lost_body.name in warnings[0]
    finally:
        again.stop()


def test_new_bodies_are_made_durable_before_the_metadata_naming_them_is_replaced(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    objects = store_folder(data_dir) / OBJECTS_FOLDER
    events: list[str] = []
    stock_fsync, stock_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(f"fsync {os.readlink(f'/proc/self/fd/{descriptor}')}")
        stock_fsync(descriptor)

    def replace(source: Any, target: Any) -> None:
        events.append(f"replace {target}")
        stock_replace(source, target)

    kept = KeptStore(data_dir)
    try:
        kept.s3.put_object(Bucket=BUCKET, Key="first", Body=b"first")
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        kept.s3.put_object(Bucket=BUCKET, Key="second", Body=b"second")
    finally:
        kept.stop()

    pickle_replaced = events.index(f"replace {store_folder(data_dir) / S3_FILE}")
    assert f"fsync {objects}" in events[:pickle_replaced], events
