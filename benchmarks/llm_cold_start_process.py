"""One LLM cold start in a fresh process: the generate function's first token and one generation after it, or
the hand-written baseline.

Request {"side": "maas", "function_path", "event", "generation_event"}: import
functions/generate/app.py (timed on its own), answer `event` (a chat asking for one token: the first
invocation of a container whose model cache is empty, so resolve, download, verify, session, warm-up and
the first token), then `generation_event` (the same chat for the full token count), then read the
process's peak resident memory: a fresh process that served one generation.

Request {"side": "baseline", "endpoint_url", "region", "bucket", "keys", "model_file", "prompt_ids",
"generation", "threads"}: import boto3, onnxruntime and numpy and make the S3 client (timed on their own),
then `download_file` each key, open an InferenceSession with the function's options (threads, no
spinning), and run one step: the prompt prefilled over an empty cache, argmax of the last logits.

The baseline's download_file makes one GET per object, as the function does. By default it splits an
object over 8 MB into ranged GETs on 10 threads, which S3 serves faster than one stream but the bench's
moto server much slower (it copies the object for each range): measured here, 9.7 s against 2.4 s for
int8's 255 MB. The default would flatter maas by moto's cost, not by anything S3 does.

Stdlib only until the measured imports (see `isolated`).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.cold_start_process import PhaseClock, download_session_and_run, first_invocation
from benchmarks.isolated import peak_rss_kib, read_request, rss_kib, write_report


def instrument_generator_load(steps: PhaseClock, load_steps: PhaseClock) -> None:
    """Time the steps of a first chat by wrapping the functions that do them, where they are looked up at
    call time, so the code path is the same; `load_steps` those inside `load_generator`."""
    import onnxruntime

    from maas.generation import loader
    from maas.generation.text_generator import TextGenerator
    from maas.registry.store import ModelRegistry

    registry: Any = ModelRegistry
    registry.alias_document = steps.wrap("resolve: GET alias", registry.alias_document)
    registry.versions = steps.wrap("resolve: list versions", registry.versions)
    registry.manifest = steps.wrap("GET manifest", registry.manifest)
    generation_loader: Any = loader
    generation_loader.load_generator = steps.wrap("load_generator", generation_loader.load_generator)

    registry.read_artifact = load_steps.wrap("S3 GET + sha256", registry.read_artifact)
    registry.download_artifact = load_steps.wrap(
        "download to /tmp, verified as it lands", registry.download_artifact
    )
    runtime: Any = onnxruntime
    runtime.InferenceSession = load_steps.wrap("InferenceSession", runtime.InferenceSession)
    generator: Any = TextGenerator
    generator.warm_up = load_steps.wrap("warm-up (prefill + step)", generator.warm_up)


def run_maas(request: dict[str, Any]) -> dict[str, Any]:
    function, report = first_invocation(request, instrument_generator_load)
    started = time.perf_counter()
    generation = function.lambda_handler(request["generation_event"], None)
    generated = time.perf_counter()
    return report | {
        "generation_response": generation,
        "generation_s": generated - started,
        "peak_rss_after_first_kib": report["peak_rss_kib"],
        "rss_after_generation_kib": rss_kib(),
        "peak_rss_kib": peak_rss_kib(),
    }


def run_baseline(request: dict[str, Any]) -> dict[str, Any]:
    def first_token(session: Any) -> dict[str, Any]:
        import numpy as np

        generation = request["generation"]
        ids = np.asarray([request["prompt_ids"]], np.int64)
        empty = np.zeros((1, generation["num_kv_heads"], 0, generation["head_size"]), np.float32)
        feeds = {generation["input_ids"]: ids, generation["attention_mask"]: np.ones_like(ids)}
        for layer in range(generation["num_layers"]):
            feeds[generation["past_key"] % layer] = empty
            feeds[generation["past_value"] % layer] = empty
        (logits,) = session.run([generation["logits"]], feeds)
        return {"token": int(np.argmax(logits[0, -1]))}

    # One GET per object: see the module docstring.
    return download_session_and_run(
        request, first_token, step="one step (prefill + argmax)", threads=request["threads"], single_get=True
    )


def main() -> None:
    request = read_request()
    write_report(run_maas(request) if request["side"] == "maas" else run_baseline(request))


if __name__ == "__main__":
    main()
