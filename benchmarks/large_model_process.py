"""One large-model measurement in a fresh process (benchmarks/test_large_model.py): a publish, a download or a
session. Stdlib only until the measured imports (see `isolated`).

Request {"side": "publish", "model_path", "name"}: `maas publish MODEL --name NAME` through the console
script's `main`, against the store the environment names. Reported: the whole command's peak resident
memory (VmHWM), that of the upload alone (registry.publish streaming the files: the high-water mark is
reset as it starts, once the checks have released the weights they mapped), and the peak of private memory
(RssAnon + RssShmem, sampled every SAMPLE_S): the one run of the import's check reads every weight through
a memory map, so for a moment the whole data file is resident as file-backed page cache, which the kernel
drops under pressure and VmHWM counts all the same.

Request {"side": "download", "how": "parallel" | "download_file" | "single" | "single-verified", "name",
"version", "path", "target"}: one artifact of a published version into `target`: "parallel" is the registry's
`download_artifact` (ranged GETs per part, each verified as it lands, as a cold start fetches);
"download_file" boto3's managed download with its default TransferConfig, unverified; "single" one
plain GET streamed to the file in 1 MiB chunks, unverified: the least work a download can do;
"single-verified" the same with the sha256 taken as it streams and checked at the end (how maas fetched
every artifact before parts). All but download_file through the functions' botocore client. The file is
removed before reporting.

Request {"side": "session", "model_path", "mapped"}: an onnxruntime session on the graph (intra-op threads
as the runtime sets them: one per usable CPU), prepacked (onnxruntime's default) or mapped
(session.disable_prepacking=1), then one run on one row of zeros. Reported: creation and run seconds, and
memory after each.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.isolated import peak_rss_kib, read_request, write_report

SAMPLE_S = 0.005
CHUNK_BYTES = 1 << 20
# /proc/self/clear_refs: "5" resets VmHWM to the current resident size (Linux >= 4.0).
RESET_PEAK = "5"


def status_kib() -> dict[str, int]:
    """The memory lines of /proc/self/status, in KiB."""
    fields = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name = line.split(":", 1)[0]
            if name in fields:
                values[name] = int(line.split()[1])
    return values


def private_kib() -> int:
    now = status_kib()
    return now["RssAnon"] + now["RssShmem"]


@contextlib.contextmanager
def private_peak() -> Iterator[list[int]]:
    """The largest private resident memory seen while the block runs (a one-item list, filled on exit)."""
    peak = [private_kib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            peak[0] = max(peak[0], private_kib())

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], private_kib())


def run_publish(request: dict[str, Any]) -> dict[str, Any]:
    from maas.cli import main
    from maas.registry.store import ModelRegistry

    upload: dict[str, float] = {}
    publish: Callable[..., Any] = ModelRegistry.publish

    def measured_publish(*args: Any, **kwargs: Any) -> Any:
        upload["peak_before_kib"] = peak_rss_kib()
        Path("/proc/self/clear_refs").write_text(RESET_PEAK)
        upload["rss_at_start_kib"] = status_kib()["VmRSS"]
        started = time.perf_counter()
        try:
            return publish(*args, **kwargs)
        finally:
            upload["seconds"] = time.perf_counter() - started
            upload["peak_kib"] = peak_rss_kib()

    registry: Any = ModelRegistry
    registry.publish = measured_publish
    printed = io.StringIO()
    started = time.perf_counter()
    with private_peak() as peak, contextlib.redirect_stdout(printed):
        code = main(["publish", request["model_path"], "--name", request["name"]])
    seconds = time.perf_counter() - started
    if code != 0 or "peak_kib" not in upload:
        raise RuntimeError(
            f"maas publish: expected exit 0 and an upload, got exit {code}: {printed.getvalue()}"
        )
    return {
        "printed": printed.getvalue(),
        "seconds": seconds,
        "upload_seconds": upload["seconds"],
        "peak_rss_kib": max(upload["peak_before_kib"], upload["peak_kib"]),
        "checks_peak_rss_kib": upload["peak_before_kib"],
        "upload_peak_rss_kib": upload["peak_kib"],
        "rss_at_upload_start_kib": upload["rss_at_start_kib"],
        "peak_private_kib": peak[0],
    }


def run_download(request: dict[str, Any]) -> dict[str, Any]:
    from maas.aws_clients import s3_client
    from maas.config import Settings
    from maas.registry.store import ModelRegistry

    settings = Settings.from_env()
    s3 = s3_client(settings.endpoint_url)
    registry = ModelRegistry.from_settings(settings, s3)
    manifest = registry.manifest(request["name"], request["version"])
    artifact = manifest.artifact(request["path"])
    target = Path(request["target"])
    started = time.perf_counter()
    try:
        if request["how"] == "parallel":
            registry.download_artifact(manifest, artifact, target)
        elif request["how"] == "download_file":
            from maas.aws_clients import s3_transfer_client

            # boto3's managed download as it comes (default TransferConfig: 10 threads, 8 MB ranges),
            # unverified: the plain download_file the cold-start baseline uses.
            key = registry.version_prefix(manifest.name, manifest.version) + artifact.path
            s3_transfer_client(settings.endpoint_url).download_file(registry.bucket, key, str(target))
        else:
            key = registry.version_prefix(manifest.name, manifest.version) + artifact.path
            body = s3.get_object(Bucket=registry.bucket, Key=key)["Body"]
            digest = hashlib.sha256() if request["how"] == "single-verified" else None
            with target.open("wb") as stream:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    if digest is not None:
                        digest.update(chunk)
                    stream.write(chunk)
            if digest is not None and digest.hexdigest() != artifact.sha256:
                raise RuntimeError(f"{artifact.path}: expected the sha256 in the manifest, got another")
        seconds = time.perf_counter() - started
        landed = target.stat().st_size
    finally:
        target.unlink(missing_ok=True)
    if landed != artifact.bytes:
        raise RuntimeError(f"{artifact.path}: expected {artifact.bytes} bytes downloaded, got {landed}")
    return {"seconds": seconds, "bytes": landed, "peak_rss_kib": peak_rss_kib()}


def run_session(request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from maas.runtime import usable_cpus

    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cpus()
    options.log_severity_level = 3
    if request["mapped"]:
        options.add_session_config_entry("session.disable_prepacking", "1")
    before = status_kib()
    started = time.perf_counter()
    session = ort.InferenceSession(request["model_path"], options, providers=["CPUExecutionProvider"])
    created = time.perf_counter()
    after_creation = status_kib()
    feeds = {
        spec.name: np.zeros([1 if not isinstance(d, int) else d for d in spec.shape], dtype=np.float32)
        for spec in session.get_inputs()
    }
    session.run(None, feeds)
    ran = time.perf_counter()
    return {
        "creation_s": created - started,
        "run_s": ran - created,
        "before_kib": before,
        "after_creation_kib": after_creation,
        "after_run_kib": status_kib(),
        "peak_rss_kib": peak_rss_kib(),
    }


SIDES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "publish": run_publish,
    "download": run_download,
    "session": run_session,
}


def main() -> None:
    request = read_request()
    write_report(SIDES[request["side"]](request))


if __name__ == "__main__":
    main()
