"""The sharded-job planner in a fresh process, against the bench store: the cut points of one large input.

Request: {"endpoint_url", "bucket", "key", "input_format", "shard_bytes", "max_record_bytes"}. Report: the
shards planned, the seconds and the bytes the planner read, the ranged reads it made, and the process's
resident memory before planning and at its peak.
"""

from __future__ import annotations

import threading
import time

from benchmarks.isolated import peak_rss_kib, read_request, rss_kib, write_report
from maas.aws_clients import s3_client
from maas.service.job_plan import plan_csv_ranges, plan_line_ranges, shard_size


class CountingReader:
    """The planner's RangeReader over ranged GETs, counting what it asks for."""

    def __init__(self, endpoint_url: str, bucket: str, key: str) -> None:
        self.s3 = s3_client(endpoint_url)
        self.bucket = bucket
        self.key = key
        self.reads = 0
        self.bytes_read = 0
        self._lock = threading.Lock()

    def __call__(self, start: int, end: int) -> bytes:
        response = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}")
        data: bytes = response["Body"].read()
        with self._lock:
            self.reads += 1
            self.bytes_read += len(data)
        return data


def main() -> None:
    request = read_request()
    reader = CountingReader(request["endpoint_url"], request["bucket"], request["key"])
    size = reader.s3.head_object(Bucket=request["bucket"], Key=request["key"])["ContentLength"]
    shard_bytes = shard_size(size, int(request["shard_bytes"]))
    baseline_kib = rss_kib()
    started = time.perf_counter()
    if request["input_format"] == "csv":
        ranges = plan_csv_ranges(size, shard_bytes, reader, max_record_bytes=int(request["max_record_bytes"]))
    else:
        ranges = plan_line_ranges(size, shard_bytes, reader, max_line_bytes=int(request["max_record_bytes"]))
    seconds = time.perf_counter() - started
    write_report(
        {
            "input_bytes": size,
            "shard_bytes": shard_bytes,
            "shards": len(ranges),
            "seconds": seconds,
            "reads": reader.reads,
            "bytes_read": reader.bytes_read,
            "baseline_rss_kib": baseline_kib,
            "peak_rss_kib": peak_rss_kib(),
        }
    )


if __name__ == "__main__":
    main()
