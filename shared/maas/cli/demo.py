"""`make demo`: the whole model zoo with its full configs, published to the local stack and queried over HTTP.

Trains every recipe with its default config, runs a TPE search on digits-resnet, publishes int8 versions
of the classifiers and the embedder next to the fp32 ones, then asks the running API Gateway emulator for
predictions from raw inputs and text. The numbers land in demo-results/summary.{md,json}, with every
version's model card and plots, so they can be read without rerunning anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from maas.local.stack import LocalStack
from maas.registry import Manifest, ManifestDraft, ModelRegistry
from maas.training.errors import QuantizationRefused
from maas.training.pipeline import TrainedModel, publish_trained, recipe, train_recipe
from maas.training.quantize import quantize_trained, with_base_version
from maas.training.search import Dimension, Range, make_plan

T = TypeVar("T")
RESULTS_DIR = Path("demo-results")
# The search explores around digits-resnet's defaults; its best trial is published as a new version.
DIGITS_SPACE: dict[str, Dimension] = {
    "lr": Range(low=1e-3, high=2e-2, log=True),
    "width": (8, 16, 32),
    "dropout": Range(low=0.0, high=0.3),
}
QUANTIZED = ("digits-resnet", "text-bert", "minilm-embed")
TEXTS = ["the movie was not good", "the food was bad but the service was great", "it was never boring"]


@dataclass
class DemoRun:
    rows: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def record(self, manifest: Manifest, seconds: float, note: str = "") -> None:
        size = manifest.artifact(manifest.model_file).bytes
        self.record_draft(manifest.name, manifest.version, manifest, size=size, seconds=seconds, note=note)

    def record_draft(
        self,
        name: str,
        version: int | None,
        manifest: Manifest | ManifestDraft,
        *,
        size: int,
        seconds: float,
        note: str,
    ) -> None:
        metric = manifest.primary_metric or ""
        self.rows.append(
            {
                "model": name,
                "version": version,
                "note": note,
                "primary_metric": metric,
                "value": manifest.metrics.get(metric),
                "metrics": manifest.metrics,
                "baseline": manifest.params.get("majority_baseline_accuracy"),
                "quantization": manifest.quantization.model_dump() if manifest.quantization else None,
                "parity_max_abs_diff": manifest.parity.max_abs_diff if manifest.parity else None,
                "bytes": size,
                "seconds": round(seconds, 1),
            }
        )


def main(argv: Sequence[str] | None = None) -> int:
    # The embedded S3 server logs every request; the demo's output is the summary.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="maas-demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--trials", type=int, default=8, help="TPE trials for the digits-resnet search")
    args = parser.parse_args(argv)
    run = DemoRun()
    with LocalStack(port=0, embedded=True, bucket="maas-demo") as stack:
        registry = stack.registry
        for recipe in ("seed-mlp", "digits-resnet", "text-bert", "minilm-embed"):
            trained, seconds = _timed(partial(train_recipe, recipe))
            manifest = publish_trained(trained, registry)
            run.record(manifest, seconds, "default config")
            if recipe in QUANTIZED:
                _publish_int8(run, registry, trained, manifest)
        plan = make_plan("tpe", DIGITS_SPACE, args.trials)
        searched, seconds = _timed(lambda: train_recipe("digits-resnet", search=plan))
        run.record(publish_trained(searched, registry), seconds, f"best of {args.trials} TPE trials")
        run.queries = _query(stack.url)
        _write(run, registry, args.out)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    return 0


def _publish_int8(run: DemoRun, registry: ModelRegistry, trained: TrainedModel, fp32: Manifest) -> None:
    allowed = recipe(trained.recipe).int8_max_degradation
    quantized, seconds = _timed(lambda: quantize_trained(trained, max_degradation=allowed))
    try:
        manifest = publish_trained(with_base_version(quantized, fp32.version), registry)
    except QuantizationRefused as refused:
        # The gate doing its job is a result worth showing, not a reason to stop the demo.
        size = len(quantized.files[quantized.draft.model_file])
        note = f"int8 of v{fp32.version} REFUSED"
        run.record_draft(fp32.name, None, quantized.draft, size=size, seconds=seconds, note=note)
        run.refusals.append(refused.message)
        return
    run.record(manifest, seconds, f"int8 of v{fp32.version}")


def _query(url: str) -> list[dict[str, Any]]:
    """Ask the running gateway, as a client would: raw pixels for digits, plain text for the text models."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images[:4].reshape(4, 1, 8, 8).astype(float)
    text = {"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}
    requests = [
        ("digits-resnet", {"inputs": [_tensor("input", pixels.tolist(), [4, 1, 8, 8])]}, digits.target[:4]),
        ("text-bert", {"inputs": [text]}, None),
        ("minilm-embed", {"inputs": [text]}, None),
    ]
    answers = []
    for model, body, expected in requests:
        request = urllib.request.Request(
            f"{url}/v2/models/{model}/infer",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        output = answer["outputs"][0]
        summary: dict[str, Any] = {
            "model": model,
            "version": answer["model_version"],
            "shape": output["shape"],
        }
        if model == "minilm-embed":
            vectors = np.asarray(output["data"]).reshape(output["shape"])
            summary["cosine(text0, text1)"] = round(float(vectors[0] @ vectors[1]), 4)
        else:
            scores = np.asarray(output["data"]).reshape(output["shape"])
            summary["predicted"] = scores.argmax(axis=1).tolist()
            if expected is not None:
                summary["expected"] = [int(v) for v in expected]
        answers.append(summary)
    return answers


def _tensor(name: str, data: Any, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def _timed(make: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = make()
    return result, time.perf_counter() - started


def _write(run: DemoRun, registry: ModelRegistry, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps({"versions": run.rows, "queries": run.queries}, indent=2, default=str), encoding="utf-8"
    )
    lines = [
        "| model | version | what | primary metric | value | baseline | int8 delta | ONNX bytes | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in run.rows:
        quantization = row["quantization"]
        delta = f"{quantization['delta']:+.4g}" if quantization else ""
        baseline = f"{row['baseline']:.3f}" if row["baseline"] is not None else ""
        value = f"{row['value']:.4f}" if row["value"] is not None else ""
        lines.append(
            f"| {row['model']} | {row['version'] or '-'} | {row['note']} | {row['primary_metric']} | "
            f"{value} | {baseline} | {delta} | {row['bytes']:,} | {row['seconds']} |"
        )
    lines += ["", *(f"Refused: {message}" for message in run.refusals)]
    lines += ["", "Queries over HTTP through the local API Gateway emulator:", ""]
    lines += [f"- `{json.dumps(query)}`" for query in run.queries]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for row in run.rows:
        if row["version"] is None:
            continue
        manifest = registry.manifest(row["model"], row["version"])
        folder = out / "cards" / f"{manifest.name}-v{manifest.version}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in manifest.report_files:
            (folder / path).write_bytes(registry.read_artifact(manifest, manifest.artifact(path)))


if __name__ == "__main__":
    raise SystemExit(main())
