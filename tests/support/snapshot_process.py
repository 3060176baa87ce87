"""One function container through a SnapStart life, in a process of its own, driven by a test:

    init            functions/<function>/app.py imported as Lambda imports it, with the initialization type
                    Lambda sets when it initializes for a snapshot (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start)
    before snapshot the registered hooks, run as the managed runtime runs them (last registered first)
    cached          the process reports, then waits on stdin while "the snapshot sits in Lambda's cache":
                    the test moves an alias then
    after restore   the registered hooks, in order
    first request   a real event through the function's handler

    python -m tests.support.snapshot_process <infer|async|batch> <model name>

What it sees is printed as `REPORT <json>` lines (the function's own logs share stdout). Each function's
build registers its own hooks; the process only runs them.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
from typing import Any

import numpy as np

from maas.aws_clients import s3_client
from maas.registry.references import parse_ref
from maas.service.inference import InferenceService
from tests.support.functions import load_function_module

REPORT = "REPORT "
# By name, as the runtime loads it: it ships no type information.
snapshot_restore_py = importlib.import_module("snapshot_restore_py")
INPUT = {"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [0.5] * 10}


def report(stage: str, **facts: Any) -> None:
    print(REPORT + json.dumps({"stage": stage, **facts}), flush=True)


def inference_service(function: str, app: Any) -> InferenceService:
    service: InferenceService
    if function == "infer":
        service = app.service
    elif function == "async":
        service = app.adapter.inference
    else:
        # The batch function's edge holds the SQS adapter (and the job steps' beside it).
        service = app.jobs.jobs.inference
    return service


def first_request(function: str, module: Any, service: InferenceService, model: str) -> int:
    """The version that answered the first request after the restore."""
    if function == "infer":
        answer = module.lambda_handler({"model": model, "id": "after-restore", "inputs": [INPUT]}, None)
        return int(answer["model_version"])
    if function == "async":
        body = json.dumps({"model": model, "id": "after-restore", "inputs": [INPUT]})
        record = {"messageId": "m-1", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}
        answer = module.lambda_handler({"Records": [{**record, "eventSource": "aws:sqs"}]}, None)
        assert answer == {"batchItemFailures": []}, answer
        settings = service.settings
        key = f"{settings.prefix}results/after-restore.json"
        stored = s3_client(settings.endpoint_url).get_object(Bucket=settings.bucket, Key=key)
        return int(json.loads(stored["Body"].read())["model_version"])
    # A batch job's first step: which version its reference resolves to.
    return service.select_version(parse_ref(model))


def main(function: str, model: str) -> None:
    module = load_function_module(function)
    app = module.app
    service = inference_service(function, app)
    client = s3_client(service.settings.endpoint_url)

    hooks = snapshot_restore_py.get_before_snapshot()
    registered = len(hooks)
    while hooks:
        func, args, kwargs = hooks.pop()
        func(*args, **kwargs)
    snapshot_random = random.getstate()
    snapshot_numpy = np.random.get_state()
    meta_before = client.meta
    # Within the alias TTL the cached resolution answers, without asking storage.
    cached_version = service.select_version(parse_ref(model))
    report(
        "snapshot",
        hooks_registered=registered,
        loaded=[list(key) for key in service.cache.loaded_keys()],
        cached_version=cached_version,
        # The infer function's general HTTP app is built on first use, so its hook builds it.
        http_app_built=function != "infer" or "http" in vars(app),
    )

    sys.stdin.readline()  # the snapshot sits in Lambda's cache until the test says a copy is restored

    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)
    continued = random.Random()
    continued.setstate(snapshot_random)
    continued_numpy = np.random.RandomState()
    continued_numpy.set_state(snapshot_numpy)
    report(
        "restored",
        random_state_changed=random.getstate() != snapshot_random,
        numpy_draw_changed=float(np.random.random_sample()) != float(continued_numpy.random_sample()),
        next_draw=random.random(),
        draw_the_snapshot_would_make=continued.random(),
        client_renewed=client.meta is not meta_before,
        first_request_version=first_request(function, module, service, model),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
