"""One cold start in a fresh process: the infer function's first invocation, or the hand-written baseline.

Request {"side": "maas", "function_path", "event"}: import functions/infer/app.py (timed on its own), then
answer `event`, the first invocation of a container whose model cache is empty.

Request {"side": "baseline", "endpoint_url", "region", "bucket", "keys", "model_file", "feeds"}: import
boto3, onnxruntime and numpy and make the S3 client (timed on their own, as the function makes its client at
import), then `download_file` each key into a temporary folder, open an InferenceSession on `model_file`
and run it once on `feeds` ({name: {"dtype", "shape", "data"}}).

Either report holds the seconds of each step, the first invocation's phases and the process's peak
resident memory after the answer. Stdlib only until the measured imports (see `isolated`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.isolated import cpu_seconds, import_app, peak_rss_kib, read_request, rss_kib, write_report

# Above any object here, so download_file never splits one into ranged GETs.
SINGLE_GET_THRESHOLD = 1 << 40


class PhaseClock:
    """Seconds spent inside wrapped callables, by phase name: where a first invocation's time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, phase: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

        return timed


def instrument_first_invocation(steps: PhaseClock, load_steps: PhaseClock) -> None:
    """Time the steps of a first invocation by wrapping the functions that do them (all already imported):
    `steps` the request's, whose sum leaves routing, decoding and encoding; `load_steps` those inside
    `load_model`. Only attributes looked up at call time are replaced, so the code path is the same."""
    import onnxruntime

    from maas.registry import store
    from maas.registry.store import ModelRegistry
    from maas.runtime import loaded_model
    from maas.service import inference

    registry: Any = ModelRegistry
    # A bare name reads the default alias and the latest pointer at once: the two overlap.
    registry.alias_document = steps.wrap("resolve: GET alias", registry.alias_document)
    pointer: Any = store
    if hasattr(pointer, "read_pointer"):  # absent from a checkout before decision 0024, for an A/B against it
        pointer.read_pointer = steps.wrap(
            "resolve: GET latest pointer (beside the alias)", pointer.read_pointer
        )
    registry.versions = steps.wrap("resolve: list versions", registry.versions)
    registry.manifest = steps.wrap("manifest (handed off by the resolution, or a GET)", registry.manifest)
    service: Any = inference
    service.load_model = steps.wrap("load_model", service.load_model)
    service.InferenceService.infer_loaded = steps.wrap(
        "validate + run", service.InferenceService.infer_loaded
    )

    registry.read_artifact = load_steps.wrap("S3 GET + sha256", registry.read_artifact)
    registry.download_artifact = load_steps.wrap(
        "download to /tmp, verified as it lands", registry.download_artifact
    )
    loaded: Any = loaded_model
    loaded.TextTokenizer = load_steps.wrap("build tokenizer", loaded.TextTokenizer)
    loaded._warm_up = load_steps.wrap("warm-up run", loaded._warm_up)
    runtime: Any = onnxruntime
    runtime.InferenceSession = load_steps.wrap("InferenceSession", runtime.InferenceSession)


def first_invocation(
    request: dict[str, Any], instrument: Callable[[PhaseClock, PhaseClock], None]
) -> tuple[ModuleType, dict[str, Any]]:
    """Import the function at `request["function_path"]` and answer `request["event"]` with its steps timed
    by `instrument`: the function, and the report of its import and first invocation."""
    started = time.perf_counter()
    function = import_app(Path(request["function_path"]))
    imported = time.perf_counter()
    import_rss_kib = rss_kib()
    steps, load_steps = PhaseClock(), PhaseClock()
    instrument(steps, load_steps)
    invoke_cpu_started = cpu_seconds()
    invoking = time.perf_counter()
    response = function.lambda_handler(request["event"], None)
    answered = time.perf_counter()
    return function, {
        "response": response,
        "import_s": imported - started,
        "first_invocation_s": answered - invoking,
        "first_invocation_cpu_s": cpu_seconds() - invoke_cpu_started,
        "phases_s": steps.seconds,
        "load_phases_s": load_steps.seconds,
        "rss_after_import_kib": import_rss_kib,
        "peak_rss_kib": peak_rss_kib(),
    }


def run_maas(request: dict[str, Any]) -> dict[str, Any]:
    return first_invocation(request, instrument_first_invocation)[1]


def run_baseline(request: dict[str, Any]) -> dict[str, Any]:
    def run(session: Any) -> dict[str, Any]:
        import numpy as np

        feeds = {
            name: np.asarray(feed["data"], dtype=feed["dtype"]).reshape(feed["shape"])
            for name, feed in request["feeds"].items()
        }
        return {"output": session.run(None, feeds)[0].ravel().tolist()}

    return download_session_and_run(request, run, step="run")


def download_session_and_run(
    request: dict[str, Any],
    run: Callable[[Any], dict[str, Any]],
    *,
    step: str,
    threads: int | None = None,
    single_get: bool = False,
) -> dict[str, Any]:
    """The baseline's cold start: its imports and S3 client (timed apart), `download_file` of each key of
    `request` into a temporary folder, an InferenceSession on its model file, then `run(session)`, whose
    result joins the report. `threads`: the session's intra-op threads, with spinning off (the generate
    function's options); else onnxruntime's defaults. `single_get`: one GET per object, never ranged parts."""
    started = time.perf_counter()
    import boto3
    import numpy  # noqa: F401  imported here so the baseline's imports are timed with boto3's
    import onnxruntime as ort
    from boto3.s3.transfer import TransferConfig

    imported = time.perf_counter()
    s3 = boto3.client("s3", endpoint_url=request["endpoint_url"], region_name=request["region"])
    client_made = time.perf_counter()
    import_rss_kib = rss_kib()
    invoke_cpu_started = cpu_seconds()
    download: dict[str, Any] = {}
    if single_get:
        download["Config"] = TransferConfig(multipart_threshold=SINGLE_GET_THRESHOLD)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="maas-bench-baseline-") as folder:
        for key in request["keys"]:
            s3.download_file(request["bucket"], key, str(Path(folder) / key.rsplit("/", 1)[-1]), **download)
        downloaded = time.perf_counter()
        session = ort.InferenceSession(
            str(Path(folder) / request["model_file"]), options, providers=["CPUExecutionProvider"]
        )
    opened = time.perf_counter()
    result = run(session)
    answered = time.perf_counter()
    return {
        **result,
        "import_s": imported - started,
        "client_s": client_made - imported,
        "first_invocation_s": answered - client_made,
        "first_invocation_cpu_s": cpu_seconds() - invoke_cpu_started,
        "phases_s": {
            "download_file": downloaded - client_made,
            "InferenceSession": opened - downloaded,
            step: answered - opened,
        },
        "rss_after_import_kib": import_rss_kib,
        "peak_rss_kib": peak_rss_kib(),
    }


def main() -> None:
    request = read_request()
    write_report(run_maas(request) if request["side"] == "maas" else run_baseline(request))


if __name__ == "__main__":
    main()
