"""How much memory a candidate store spends on one large object: maas publishes multi-GB artifacts and
serves them by ranged GETs, so a store that assembles a multipart object, or answers a GET, in memory is
out whatever its fidelity.

The server's peak resident memory (VmHWM, reset through /proc/<pid>/clear_refs between phases) above its
resident memory when the phase began, per phase: a multipart upload and its completion, ranged GETs,
one whole GET. Linux only, and the server must be a process this user may write clear_refs of."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from infra.store_probes import ProbeResult, Target

MIB = 1024 * 1024
PART_MIB = 16
RANGED_GETS = 8
READ_CHUNK = MIB


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field}")


def start_phase(pid: int) -> int:
    """Reset the peak to the present and return the present resident memory (KiB)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_kib(pid, "VmRSS")


def phase_result(name: str, pid: int, started_kib: int, detail: str) -> ProbeResult:
    grown_mb = (memory_kib(pid, "VmHWM") - started_kib) / 1024
    return ProbeResult(name, True, f"peak +{grown_mb:.0f} MB above the phase's start; {detail}")


def part_body(number: int) -> bytes:
    return bytes([number % 251]) * (PART_MIB * MIB)


def upload(target: Target, key: str, parts: int) -> None:
    upload_id = target.s3.create_multipart_upload(Bucket=target.bucket, Key=key)["UploadId"]
    done = []
    for number in range(1, parts + 1):
        etag = target.s3.upload_part(
            Bucket=target.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part_body(number)
        )["ETag"]
        done.append({"ETag": etag, "PartNumber": number})
    target.s3.complete_multipart_upload(
        Bucket=target.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )


def drain(body: Any) -> int:
    total = 0
    while chunk := body.read(READ_CHUNK):
        total += len(chunk)
    return total


def measure_large_object(target: Target, pid: int, size_mib: int) -> list[ProbeResult]:
    parts = max(1, size_mib // PART_MIB)
    key = f"survey/{uuid.uuid4().hex[:12]}/large.bin"
    results = []

    started = start_phase(pid)
    upload(target, key, parts)
    results.append(phase_result("multipart upload", pid, started, f"{parts} parts of {PART_MIB} MiB"))

    started = start_phase(pid)
    part_bytes = PART_MIB * MIB
    for index in range(RANGED_GETS):
        first = (index * parts // RANGED_GETS) * part_bytes
        answer = target.s3.get_object(Bucket=target.bucket, Key=key, Range=f"bytes={first}-{first + MIB - 1}")
        if drain(answer["Body"]) != MIB:
            return [*results, ProbeResult("ranged GETs", False, "a 1 MiB range came back short")]
    results.append(phase_result("ranged GETs", pid, started, f"{RANGED_GETS} ranges of 1 MiB"))

    started = start_phase(pid)
    size = drain(target.s3.get_object(Bucket=target.bucket, Key=key)["Body"])
    whole = phase_result("whole GET", pid, started, f"{size // MIB} MiB read")
    results.append(whole if size == parts * part_bytes else ProbeResult("whole GET", False, f"{size} bytes"))
    target.s3.delete_object(Bucket=target.bucket, Key=key)
    return results
