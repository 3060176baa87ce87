"""The embedded store's moto server holds multi-GB objects (maas.local.moto_large_objects): a ranged GET reads
only its range, a whole GET streams, a multipart completion streams its parts, and each answer is the one
moto gives (status, Content-Range, ETag, checksums). Objects here are tens of MB: big enough to live on disk
(moto spools past 5 MiB), small enough for a test; memory is measured with tracemalloc, never wall time."""

from __future__ import annotations

import base64
import hashlib
import random
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
import moto
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.s3.utils import compute_checksum

from maas.errors import ConfigurationError
from maas.local.moto_large_objects import CHECKSUM_ALGORITHMS, RunningChecksum, install_large_object_support
from tests.support.aws import REGION, moto_server, use_fake_aws
from tests.support.paths import ROOT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import ChecksumAlgorithmType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

BUCKET = "large-objects"
MIB = 1024 * 1024
PART_SIZES = (16 * MIB, 16 * MIB, 5 * MIB + 12345)  # S3's 5 MiB minimum, and a ragged last part


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


PARTS = [random_bytes(size, seed) for seed, size in enumerate(PART_SIZES)]
OBJECT = b"".join(PARTS)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Client]:
    with pytest.MonkeyPatch.context() as env, moto_server() as endpoint:
        use_fake_aws(env)
        client: S3Client = boto3.client(
            "s3", endpoint_url=endpoint, region_name=REGION, config=Config(max_pool_connections=32)
        )
        client.create_bucket(Bucket=BUCKET)
        yield client


def upload_in_parts(s3: S3Client, key: str, parts: list[bytes], **create: Any) -> dict[str, Any]:
    """Multipart upload with ChecksumSHA256 on each part, completed create-only; returns the completion."""
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256", **create)[
        "UploadId"
    ]
    listed: list[CompletedPartTypeDef] = []
    for number, part in enumerate(parts, start=1):
        sha256 = base64.b64encode(hashlib.sha256(part).digest()).decode()
        answer = s3.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=part, ChecksumSHA256=sha256
        )
        assert answer["ChecksumSHA256"] == sha256
        listed.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": sha256})
    return dict(
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}, IfNoneMatch="*"
        )
    )


def multipart_etag(parts: list[bytes]) -> str:
    md5s = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"'


@pytest.fixture(scope="module")
def multipart_key(s3: S3Client) -> str:
    upload_in_parts(s3, "model.onnx.data", PARTS)
    return "model.onnx.data"


def traced_peak(action: Callable[[], object]) -> int:
    """Peak bytes Python allocated while `action` ran, server and client both (one process). It includes up
    to 10 MB that werkzeug's server reads to drain a finished request's socket (werkzeug/serving.py:359),
    so the bounds below are half the object, which stock moto exceeds by reading the whole of it."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


SIZE = len(OBJECT)
RANGES = {
    "start": ("bytes=0-99", 0, 99),
    "across a part boundary": (f"bytes={16 * MIB - 50}-{16 * MIB + 49}", 16 * MIB - 50, 16 * MIB + 49),
    "end": (f"bytes={SIZE - 100}-{SIZE - 1}", SIZE - 100, SIZE - 1),
    "suffix": ("bytes=-1000", SIZE - 1000, SIZE - 1),
    "open": (f"bytes={SIZE - 3 * MIB}-", SIZE - 3 * MIB, SIZE - 1),
    "past the end, clipped": (f"bytes={SIZE - 10}-{SIZE + 1000}", SIZE - 10, SIZE - 1),
}


@pytest.mark.parametrize(("header", "first", "last"), RANGES.values(), ids=RANGES.keys())
def test_a_ranged_get_answers_exactly_its_bytes_with_moto_headers(
    s3: S3Client, multipart_key: str, header: str, first: int, last: int
) -> None:
    answer = s3.get_object(Bucket=BUCKET, Key=multipart_key, Range=header, ChecksumMode="ENABLED")

    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert headers["content-length"] == str(last - first + 1)
    assert headers["etag"] == multipart_etag(PARTS)
    assert not [name for name in headers if name.startswith("x-amz-checksum-")]
    assert answer["Body"].read() == OBJECT[first : last + 1]


def test_a_range_starting_past_the_end_is_416_invalid_range(s3: S3Client, multipart_key: str) -> None:
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=BUCKET, Key=multipart_key, Range=f"bytes={SIZE}-")

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert refused.value.response["Error"]["Code"] == "InvalidRange"


def test_a_ranged_get_reads_only_its_range(s3: S3Client, multipart_key: str) -> None:
    def one_mib() -> bytes:
        return s3.get_object(Bucket=BUCKET, Key=multipart_key, Range=f"bytes={MIB}-{2 * MIB - 1}")[
            "Body"
        ].read()

    assert traced_peak(one_mib) < SIZE // 2


def test_a_whole_get_streams_the_object(s3: S3Client, multipart_key: str) -> None:
    received = hashlib.sha256()

    def whole() -> None:
        answer = s3.get_object(Bucket=BUCKET, Key=multipart_key, ChecksumMode="ENABLED")
        assert answer["ContentLength"] == SIZE
        assert answer["ETag"] == multipart_etag(PARTS)
        for chunk in answer["Body"].iter_chunks(MIB):
            received.update(chunk)

    assert traced_peak(whole) < SIZE // 2
    assert received.digest() == hashlib.sha256(OBJECT).digest()


def test_a_small_object_in_memory_answers_ranges_too(s3: S3Client) -> None:
    small = random_bytes(100_000, seed=7)
    s3.put_object(Bucket=BUCKET, Key="small.json", Body=small)

    answer = s3.get_object(Bucket=BUCKET, Key="small.json", Range="bytes=-10")

    assert answer["ContentRange"] == "bytes 99990-99999/100000"
    assert answer["Body"].read() == small[-10:]


def test_parallel_ranged_gets_of_one_new_key_all_answer_its_bytes_and_etag(s3: S3Client) -> None:
    # A key written by one PUT: its ETag is hashed on the first GETs, which arrive here all at once.
    content = random_bytes(12 * MIB + 7, seed=11)
    s3.put_object(Bucket=BUCKET, Key="parallel.bin", Body=content)
    spans = [(offset, min(offset + 700_000, len(content)) - 1) for offset in range(0, len(content), 400_000)]
    start = threading.Barrier(16)

    def fetch(worker: int) -> list[tuple[int, int, bytes, str]]:
        start.wait()
        fetched = []
        for first, last in spans[worker::16]:
            answer = s3.get_object(Bucket=BUCKET, Key="parallel.bin", Range=f"bytes={first}-{last}")
            fetched.append((first, last, answer["Body"].read(), answer["ETag"]))
        return fetched

    with ThreadPoolExecutor(16) as pool:
        results = [item for batch in pool.map(fetch, range(16)) for item in batch]

    assert len(results) == len(spans)
    assert [(first, last) for first, last, body, _ in results if body != content[first : last + 1]] == []
    assert {etag for *_, etag in results} == {f'"{hashlib.md5(content).hexdigest()}"'}


def test_a_completed_multipart_object_is_exact_with_moto_etag_and_checksum(
    s3: S3Client, multipart_key: str
) -> None:
    part_sha256s = b"".join(hashlib.sha256(part).digest() for part in PARTS)
    composite = base64.b64encode(hashlib.sha256(part_sha256s).digest()).decode()

    answer = s3.get_object(Bucket=BUCKET, Key=multipart_key, ChecksumMode="ENABLED")
    second = s3.get_object(Bucket=BUCKET, Key=multipart_key, PartNumber=2)

    assert answer["ETag"] == multipart_etag(PARTS)
    assert answer["ContentLength"] == SIZE
    assert answer["ChecksumSHA256"] == f"{composite}-{len(PARTS)}"
    assert answer["ChecksumType"] == "COMPOSITE"
    assert hashlib.sha256(answer["Body"].read()).digest() == hashlib.sha256(OBJECT).digest()
    assert second["ContentRange"] == f"bytes {16 * MIB}-{32 * MIB - 1}/{SIZE}"
    assert second["PartsCount"] == len(PARTS)
    assert second["Body"].read() == PARTS[1]


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC64NVME"])
def test_a_full_object_checksum_is_moto_s_over_the_whole_object(
    s3: S3Client, algorithm: ChecksumAlgorithmType
) -> None:
    key = f"full-{algorithm}.bin"
    upload_id = s3.create_multipart_upload(
        Bucket=BUCKET, Key=key, ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT"
    )["UploadId"]
    listed: list[CompletedPartTypeDef] = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=part)[
                "ETag"
            ],
        }
        for number, part in enumerate(PARTS, start=1)
    ]

    def complete() -> None:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
        )

    assert traced_peak(complete) < SIZE // 2  # stock moto holds the object two or three times
    headers = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")["ResponseMetadata"][
        "HTTPHeaders"
    ]
    assert headers[f"x-amz-checksum-{algorithm.lower()}"] == compute_checksum(OBJECT, algorithm).decode()
    assert headers["x-amz-checksum-type"] == "FULL_OBJECT"


def test_a_second_writer_completing_the_same_key_create_only_is_refused(s3: S3Client) -> None:
    first = [random_bytes(5 * MIB, seed=21), b"first"]
    upload_in_parts(s3, "create-only.bin", first)

    with pytest.raises(ClientError) as refused:
        upload_in_parts(s3, "create-only.bin", [random_bytes(5 * MIB, seed=22), b"second"])

    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=BUCKET, Key="create-only.bin")["Body"].read() == b"".join(first)


def test_a_completion_naming_a_wrong_part_etag_is_refused_and_the_parts_stay(s3: S3Client) -> None:
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="retried.bin")["UploadId"]
    etags = [
        s3.upload_part(Bucket=BUCKET, Key="retried.bin", UploadId=upload_id, PartNumber=n, Body=part)["ETag"]
        for n, part in enumerate(PARTS[:2], start=1)
    ]
    wrong: list[CompletedPartTypeDef] = [{"PartNumber": n, "ETag": etags[0]} for n in (1, 2)]
    right: list[CompletedPartTypeDef] = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]

    with pytest.raises(ClientError) as refused:
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key="retried.bin", UploadId=upload_id, MultipartUpload={"Parts": wrong}
        )
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="retried.bin", UploadId=upload_id, MultipartUpload={"Parts": right}
    )

    assert refused.value.response["Error"]["Code"] == "InvalidPart"
    assert s3.get_object(Bucket=BUCKET, Key="retried.bin")["Body"].read() == b"".join(PARTS[:2])


def test_a_part_whose_body_does_not_match_its_checksum_sha256_is_refused(s3: S3Client) -> None:
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="corrupt.bin", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    other = base64.b64encode(hashlib.sha256(b"another part").digest()).decode()

    with pytest.raises(ClientError) as refused:
        s3.upload_part(
            Bucket=BUCKET,
            Key="corrupt.bin",
            UploadId=upload_id,
            PartNumber=1,
            Body=PARTS[2],
            ChecksumSHA256=other,
        )

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    assert s3.list_parts(Bucket=BUCKET, Key="corrupt.bin", UploadId=upload_id).get("Parts", []) == []


@pytest.mark.parametrize("algorithm", CHECKSUM_ALGORITHMS)
def test_a_running_checksum_fed_in_chunks_is_moto_s_checksum(algorithm: str) -> None:
    content = random_bytes(3 * MIB + 17, seed=3)
    running = RunningChecksum(algorithm)
    for offset in range(0, len(content), 1_000_003):
        running.update(content[offset : offset + 1_000_003])

    assert running.digest() == compute_checksum(content, algorithm, encode_base64=False)


def test_another_moto_version_is_refused_at_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto, "__version__", "5.3.0")

    with pytest.raises(ConfigurationError, match=r"patches moto 5\.2\.6.*got moto 5\.3\.0"):
        install_large_object_support()


STARTS = {
    "start_moto_server": "from maas.local.object_store import start_moto_server\n"
    "server, endpoint = start_moto_server()\n",
    "the local stack's EmbeddedStore": "from maas.local.object_store import EmbeddedStore\n"
    "from maas.local.process_environment import EnvironmentPatch\n"
    "endpoint = EmbeddedStore(EnvironmentPatch()).start()\n",
}
REFUSES_A_CORRUPT_PART = """
import base64, hashlib, boto3
from botocore.exceptions import ClientError
from maas.local.moto_large_objects import is_installed
assert not is_installed()
{start}
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
s3.create_bucket(Bucket="fresh")
upload = s3.create_multipart_upload(Bucket="fresh", Key="k")["UploadId"]
try:
    s3.upload_part(Bucket="fresh", Key="k", UploadId=upload, PartNumber=1, Body=b"part",
                   ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode())
except ClientError as refused:
    print(refused.response["Error"]["Code"])
"""


@pytest.mark.parametrize("start", STARTS.values(), ids=STARTS.keys())
def test_the_servers_maas_local_starts_are_patched(start: str) -> None:
    # A fresh interpreter: this one has patched moto already, so only a new process shows who patches it.
    completed = subprocess.run(
        [sys.executable, "-c", REFUSES_A_CORRUPT_PART.format(start=start)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT / "shared"),
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        },
        cwd=ROOT,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["BadDigest"]
