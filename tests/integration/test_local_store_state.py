"""The embedded store kept in a data folder (maas.local.store_state), driven over HTTP as S3 clients do:
what is restored, where bodies live, what happens to an unusable saved state, and conditional writes
racing on the served store."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from maas.local.object_store import EmbeddedStore
from maas.local.ports import choose_store_port
from maas.local.process_environment import EnvironmentPatch
from maas.local.store_state import OBJECTS_FOLDER, STATE_FILE, StoreStateError, store_folder

BUCKET = "kept-bucket"
RACERS = 16


class KeptStore:
    """An EmbeddedStore on `data_dir`, with an S3 client for it, started and stopped like `make serve`."""

    def __init__(self, data_dir: Path) -> None:
        self.environment = EnvironmentPatch()
        # As LocalStack does: the port remembered in the folder, else a free one.
        port = choose_store_port(data_dir, requested=None, gateway_port=0)
        self.store = EmbeddedStore(self.environment, data_dir=data_dir, port=port)
        self.endpoint = self.store.start()
        self.s3: Any = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            config=Config(max_pool_connections=RACERS * 2),
        )

    def stop(self) -> None:
        self.store.stop()
        self.environment.restore()


@pytest.fixture
def kept(isolated_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[KeptStore]:
    store = KeptStore(tmp_path / "data")
    try:
        store.s3.create_bucket(Bucket=BUCKET)
        yield store
    finally:
        store.stop()


def body_files(data_dir: Path) -> set[str]:
    return {path.name for path in (store_folder(data_dir) / OBJECTS_FOLDER).iterdir()}


def test_objects_come_back_with_their_metadata_and_bodies_stay_files(kept: KeptStore, tmp_path: Path) -> None:
    large = bytes(range(256)) * (6 * 4096)  # past moto's 5 MiB in-memory size
    kept.s3.put_object(Bucket=BUCKET, Key="small.json", Body=b'{"a": 1}', ContentType="application/json")
    kept.s3.put_object(Bucket=BUCKET, Key="large.bin", Body=large, ServerSideEncryption="AES256")
    kept.s3.put_object(Bucket=BUCKET, Key="replaced", Body=b"first")
    kept.s3.put_object(Bucket=BUCKET, Key="replaced", Body=b"second")
    kept.s3.put_object(Bucket=BUCKET, Key="deleted", Body=b"gone")
    kept.s3.delete_object(Bucket=BUCKET, Key="deleted")
    etag = kept.s3.head_object(Bucket=BUCKET, Key="large.bin")["ETag"]
    kept.stop()

    # One file per live object: the replaced and the deleted bodies are gone from the folder.
    assert len(body_files(tmp_path / "data")) == 3
    again = KeptStore(tmp_path / "data")
    try:
        assert again.endpoint == kept.endpoint
        listed = again.s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        assert sorted(item["Key"] for item in listed) == ["large.bin", "replaced", "small.json"]
        small = again.s3.get_object(Bucket=BUCKET, Key="small.json")
        assert (small["Body"].read(), small["ContentType"]) == (b'{"a": 1}', "application/json")
        head = again.s3.head_object(Bucket=BUCKET, Key="large.bin")
        assert (head["ETag"], head["ServerSideEncryption"], head["ContentLength"]) == (
            etag,
            "AES256",
            len(large),
        )
        ranged = again.s3.get_object(Bucket=BUCKET, Key="large.bin", Range="bytes=1000-1009")["Body"].read()
        assert ranged == large[1000:1010]
        assert again.s3.get_object(Bucket=BUCKET, Key="replaced")["Body"].read() == b"second"
    finally:
        again.stop()
        kept.environment.restore()


def test_a_versioned_bucket_keeps_every_version(kept: KeptStore, tmp_path: Path) -> None:
    kept.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = kept.s3.put_object(Bucket=BUCKET, Key="doc", Body=b"one")["VersionId"]
    kept.s3.put_object(Bucket=BUCKET, Key="doc", Body=b"two")
    kept.stop()

    again = KeptStore(tmp_path / "data")
    try:
        versions = again.s3.list_object_versions(Bucket=BUCKET, Prefix="doc")["Versions"]
        assert len(versions) == 2
        assert again.s3.get_object(Bucket=BUCKET, Key="doc", VersionId=first)["Body"].read() == b"one"
        assert again.s3.get_object(Bucket=BUCKET, Key="doc")["Body"].read() == b"two"
    finally:
        again.stop()
        kept.environment.restore()


def test_an_unusable_saved_state_names_its_folder_and_the_reset_command(
    kept: KeptStore, tmp_path: Path
) -> None:
    kept.s3.put_object(Bucket=BUCKET, Key="k", Body=b"v")
    kept.stop()
    state = store_folder(tmp_path / "data") / STATE_FILE
    state.write_text(json.dumps({"format": 999, "moto": "0.0"}))

    with pytest.raises(StoreStateError) as raised:
        KeptStore(tmp_path / "data")

    assert str(store_folder(tmp_path / "data")) in raised.value.message
    assert "maas serve --reset" in raised.value.message
    assert "\n" not in raised.value.message
    kept.environment.restore()


def test_racing_conditional_writers_have_exactly_one_winner(kept: KeptStore) -> None:
    for round_number in range(4):
        key = f"claim-{round_number}"
        barrier = threading.Barrier(RACERS)
        outcomes: list[str] = [""] * RACERS

        def claim(
            index: int, key: str = key, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes
        ) -> None:
            barrier.wait()
            try:
                kept.s3.put_object(Bucket=BUCKET, Key=key, Body=str(index).encode(), IfNoneMatch="*")
                outcomes[index] = "won"
            except ClientError as exc:
                outcomes[index] = str(exc.response["Error"]["Code"])

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert outcomes.count("won") == 1, outcomes
        assert set(outcomes) - {"won"} <= {"PreconditionFailed", "ConditionalRequestConflict"}
        winner = outcomes.index("won")
        assert kept.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == str(winner).encode()
