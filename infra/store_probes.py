"""Fidelity probes for an S3-compatible endpoint: the S3 behaviours maas relies on, each checked the way
AWS behaves. `infra/store_survey.py` runs them and prints the table of docs/architecture/store-survey.md.

Each probe works under a key prefix of its own run, so probes can run again on a store that keeps its
data. A probe returns what it saw or raises `ProbeFailed`; the survey turns either into a `ProbeResult`,
because a candidate that fails a probe is a finding, not an error. The notification probe is in
infra/store_notification_probe.py."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

RACERS = 16
RACE_ROUNDS = 10
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part that is not the last
# Conditional writes that lose answer 412; AWS answers 409 to one that raced another still in flight.
LOSING_STATUSES = (409, 412)
# Racers write bodies this large: a store that checks, then hashes and writes, has a window as wide as the
# write (hashlib lets other threads run past 2 KiB), as maas's own conditional artifact writes would.
RACE_BODY_BYTES = 256 * 1024


class ProbeFailed(Exception):
    """What a probe saw differ from S3; its message becomes the table's detail."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Target:
    """The clients under test; `sqs` and `kms` are None where the candidate has no such service."""

    s3: Any
    bucket: str
    region: str
    sqs: Any | None = None
    kms: Any | None = None
    # Racing writers get a client without retries, so a lost race is seen as it was answered.
    s3_raw: Any | None = None
    race_rounds: int = RACE_ROUNDS


def status_of(exc: Exception) -> int | None:
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) or None
    return None


def expect_status(call: Callable[[], Any], expected: int, what: str) -> None:
    try:
        call()
    except ClientError as exc:
        if status_of(exc) == expected:
            return
        raise ProbeFailed(f"{what}: expected {expected}, got {status_of(exc)} {exc}") from None
    raise ProbeFailed(f"{what}: expected {expected}, got success")


def fresh_key(stem: str) -> str:
    return f"survey/{uuid.uuid4().hex[:12]}/{stem}"


def probe_if_none_match_twice(target: Target) -> str:
    key = fresh_key("inm")
    target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"first", IfNoneMatch="*")
    expect_status(
        lambda: target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"second", IfNoneMatch="*"),
        412,
        "second PUT If-None-Match:*",
    )
    body = target.s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
    if body != b"first":
        raise ProbeFailed(f"the refused PUT overwrote the object: got {body!r}")
    return "second PUT 412, first body kept"


def probe_if_match_stale(target: Target) -> str:
    key = fresh_key("if-match")
    stale = target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"v1")["ETag"]
    current = target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"v2", IfMatch=stale)["ETag"]
    expect_status(
        lambda: target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"v3", IfMatch=stale),
        412,
        "PUT If-Match stale ETag",
    )
    expect_status(
        lambda: target.s3.delete_object(Bucket=target.bucket, Key=key, IfMatch=stale),
        412,
        "DELETE If-Match stale ETag",
    )
    target.s3.delete_object(Bucket=target.bucket, Key=key, IfMatch=current)
    expect_status(lambda: target.s3.head_object(Bucket=target.bucket, Key=key), 404, "HEAD after DELETE")
    return "PUT and DELETE with a stale ETag 412; with the current one applied"


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """`count` workers released at the same instant; each one's result, or the exception it raised (a lost
    race is an outcome under test, kept as data)."""
    barrier = threading.Barrier(count)

    def released(index: int) -> Any:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(released, index) for index in range(count)]
    return [future.exception() or future.result() for future in futures]


def judge_round(outcomes: list[Any], round_number: int) -> int:
    """The winner's index; raises unless exactly one writer won and every other lost with 409/412."""
    winners = [index for index, outcome in enumerate(outcomes) if not isinstance(outcome, Exception)]
    odd = [o for o in outcomes if isinstance(o, Exception) and status_of(o) not in LOSING_STATUSES]
    if odd:
        raise ProbeFailed(f"round {round_number}: a loser answered {type(odd[0]).__name__}: {odd[0]}")
    if len(winners) != 1:
        raise ProbeFailed(f"round {round_number}: {len(winners)} of {len(outcomes)} writers won, expected 1")
    return winners[0]


def race_body(name: str) -> bytes:
    return name.encode().ljust(RACE_BODY_BYTES, b".")


def probe_race_if_none_match(target: Target) -> str:
    s3 = target.s3_raw or target.s3
    for round_number in range(1, target.race_rounds + 1):
        key = fresh_key("race-inm")
        outcomes = run_together(
            RACERS,
            lambda i, key=key: s3.put_object(  # type: ignore[misc]
                Bucket=target.bucket, Key=key, Body=race_body(f"writer-{i}"), IfNoneMatch="*"
            ),
        )
        winner = judge_round(outcomes, round_number)
        body = target.s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
        if body != race_body(f"writer-{winner}"):
            raise ProbeFailed(f"round {round_number}: writer {winner} won but the object holds {body[:24]!r}")
    return f"{target.race_rounds} rounds x {RACERS} writers: one winner each"


def probe_race_if_match(target: Target) -> str:
    s3 = target.s3_raw or target.s3
    key = fresh_key("race-if-match")
    etag = target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"start")["ETag"]
    for round_number in range(1, target.race_rounds + 1):
        outcomes = run_together(
            RACERS,
            lambda i, etag=etag, n=round_number: s3.put_object(  # type: ignore[misc]
                Bucket=target.bucket, Key=key, Body=race_body(f"round-{n}-writer-{i}"), IfMatch=etag
            ),
        )
        winner = judge_round(outcomes, round_number)
        etag = outcomes[winner]["ETag"]
        body = target.s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
        if body != race_body(f"round-{round_number}-writer-{winner}"):
            raise ProbeFailed(f"round {round_number}: writer {winner} won but the object holds {body[:24]!r}")
    return f"{target.race_rounds} rounds x {RACERS} writers: one winner each"


def upload_in_parts(target: Target, key: str, parts: list[bytes], **complete: Any) -> dict[str, Any]:
    upload_id = target.s3.create_multipart_upload(Bucket=target.bucket, Key=key)["UploadId"]
    done = []
    for number, body in enumerate(parts, start=1):
        etag = target.s3.upload_part(
            Bucket=target.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )["ETag"]
        done.append({"ETag": etag, "PartNumber": number})
    try:
        return dict(
            target.s3.complete_multipart_upload(
                Bucket=target.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}, **complete
            )
        )
    except ClientError:
        target.s3.abort_multipart_upload(Bucket=target.bucket, Key=key, UploadId=upload_id)
        raise


def probe_multipart_if_none_match(target: Target) -> str:
    key = fresh_key("mpu-inm")
    first = [b"a" * PART_BYTES, b"tail"]
    upload_in_parts(target, key, first, IfNoneMatch="*")
    expect_status(
        lambda: upload_in_parts(target, key, [b"b" * PART_BYTES, b"other"], IfNoneMatch="*"),
        412,
        "second CompleteMultipartUpload If-None-Match:*",
    )
    head = target.s3.head_object(Bucket=target.bucket, Key=key)
    if head["ContentLength"] != PART_BYTES + 4 or not head["ETag"].rstrip('"').endswith("-2"):
        raise ProbeFailed(f"the first upload's object changed: {head['ContentLength']} bytes, {head['ETag']}")
    return "second completion 412, first object (ETag ...-2) kept"


def probe_part_copy_and_range(target: Target) -> str:
    source_key, key = fresh_key("copy-source"), fresh_key("copy-target")
    source = bytes(range(256)) * (PART_BYTES // 256 + 1)
    target.s3.put_object(Bucket=target.bucket, Key=source_key, Body=source)
    upload_id = target.s3.create_multipart_upload(Bucket=target.bucket, Key=key)["UploadId"]
    ranges = [(0, PART_BYTES - 1), (PART_BYTES, len(source) - 1)]
    parts = []
    for number, (first, last) in enumerate(ranges, start=1):
        copied = target.s3.upload_part_copy(
            Bucket=target.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": target.bucket, "Key": source_key},
            CopySourceRange=f"bytes={first}-{last}",
        )
        parts.append({"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": number})
    target.s3.complete_multipart_upload(
        Bucket=target.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    whole = target.s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
    if whole != source:
        raise ProbeFailed(f"the copied object differs from its source ({len(whole)} vs {len(source)} bytes)")
    ranged = target.s3.get_object(Bucket=target.bucket, Key=key, Range="bytes=1000-1999")
    body = ranged["Body"].read()
    expected_range = f"bytes 1000-1999/{len(source)}"
    if body != source[1000:2000] or ranged.get("ContentRange") != expected_range:
        raise ProbeFailed(f"ranged GET: {len(body)} bytes, Content-Range {ranged.get('ContentRange')!r}")
    if ranged["ResponseMetadata"]["HTTPStatusCode"] != 206:
        raise ProbeFailed(f"ranged GET answered {ranged['ResponseMetadata']['HTTPStatusCode']}, expected 206")
    return "2 ranged part copies reassemble the source; ranged GET 206 with Content-Range"


def kms_key_id(target: Target) -> str:
    """A key of the candidate's KMS when it has one; else an id S3 cannot check."""
    if target.kms is not None:
        try:
            return str(target.kms.create_key(Description="store survey")["KeyMetadata"]["KeyId"])
        except (ClientError, BotoCoreError):
            pass
    return str(uuid.uuid4())


def sse_echoed(answer: dict[str, Any], algorithm: str, key_id: str | None) -> str | None:
    """What differs from S3's echo of the encryption, or None."""
    if answer.get("ServerSideEncryption") != algorithm:
        return f"ServerSideEncryption {answer.get('ServerSideEncryption')!r}, expected {algorithm!r}"
    if key_id is None:
        return None
    echoed = str(answer.get("SSEKMSKeyId", ""))
    # AWS answers the key's ARN whatever form the request named it in.
    if echoed != key_id and not echoed.endswith(f"key/{key_id}"):
        return f"SSEKMSKeyId {echoed!r}, expected {key_id} or its ARN"
    return None


def probe_sse_headers(target: Target) -> str:
    key_id = kms_key_id(target)
    cases: list[tuple[str, str | None, dict[str, str]]] = [
        ("AES256", None, {"ServerSideEncryption": "AES256"}),
        ("aws:kms", key_id, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}),
    ]
    for algorithm, expected_key, arguments in cases:
        key = fresh_key("sse")
        answers = {
            "PUT": target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"secret", **arguments),
            "HEAD": target.s3.head_object(Bucket=target.bucket, Key=key),
            "GET": target.s3.get_object(Bucket=target.bucket, Key=key),
        }
        for verb, answer in answers.items():
            problem = sse_echoed(answer, algorithm, expected_key)
            if problem:
                raise ProbeFailed(f"{algorithm} {verb}: {problem}")
    return "AES256 and aws:kms (+ key id) echoed on PUT, HEAD and GET"


def listed_pages(target: Target, prefix: str, **arguments: Any) -> list[dict[str, Any]]:
    pages = []
    token: str | None = None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = target.s3.list_objects_v2(
            Bucket=target.bucket, Prefix=prefix, MaxKeys=10, **arguments, **extra
        )
        pages.append(page)
        if not page.get("IsTruncated"):
            return pages
        token = page.get("NextContinuationToken")
        if not token or len(pages) > 10:
            raise ProbeFailed(f"page {len(pages)}: truncated without a usable NextContinuationToken")


def probe_list_pagination(target: Target) -> str:
    prefix = fresh_key("list") + "/"
    keys = [f"{prefix}{index:03d}/{leaf}" for index in range(25) for leaf in ("a", "b")]
    for key in keys:
        target.s3.put_object(Bucket=target.bucket, Key=key, Body=b"")
    pages = listed_pages(target, prefix)
    listed = [item["Key"] for page in pages for item in page.get("Contents", [])]
    if listed != keys or [page.get("KeyCount") for page in pages] != [10, 10, 10, 10, 10]:
        raise ProbeFailed(
            f"{len(listed)} keys in pages of {[p.get('KeyCount') for p in pages]}, expected 5x10"
        )
    folders = listed_pages(target, prefix, Delimiter="/")
    common = [entry["Prefix"] for page in folders for entry in page.get("CommonPrefixes", [])]
    if common != sorted({key.rsplit("/", 1)[0] + "/" for key in keys}) or len(folders) != 3:
        raise ProbeFailed(
            f"Delimiter='/': {len(common)} common prefixes over {len(folders)} pages, expected 25/3"
        )
    after = target.s3.list_objects_v2(Bucket=target.bucket, Prefix=prefix, StartAfter=keys[44])
    if [item["Key"] for item in after.get("Contents", [])] != keys[45:]:
        raise ProbeFailed("StartAfter did not start after the named key")
    return "50 keys in 5 pages; 25 common prefixes in 3 pages; StartAfter"
