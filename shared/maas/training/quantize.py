"""Dynamic int8 quantization of a trained model, judged by its primary metric on the same test set.

Weights become int8 and activations are quantized on the fly, so no calibration data is needed. The
int8 graph cannot match torch to 1e-4, so parity is replaced by a metric gate: the quantized model is
evaluated through onnxruntime exactly like the fp32 one, and publishing refuses it when the primary
metric degrades by more than `max_degradation` (in the metric's own units).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from maas.errors import InvalidInput
from maas.registry import Quantization
from maas.registry.manifest import MODEL_FILE
from maas.training.card import render_report
from maas.training.export import onnx_outputs, torch_outputs
from maas.training.importance import measure_feature_importance
from maas.training.int8_speed import DEFAULT_MIN_INT8_SPEEDUP, benchmark_feeds, measure_int8_speed
from maas.training.metrics import evaluate
from maas.training.onnx_checks import (
    check_onnx,
    external_data_files,
    materialized,
    open_session,
    read_folder_files,
    signature_of,
)
from maas.training.pipeline import TrainedModel, recipe, report_for

DEFAULT_MAX_DEGRADATION = 0.01
QUANTIZED_FILE = "model.onnx"
# Logs every node it skips at INFO; the outcome is what matters and it is measured.
_QUANTIZER_LOGGER = "onnxruntime.quantization"


def quantize_int8(files: dict[str, bytes], *, per_channel: bool) -> dict[str, bytes]:
    """The graph in `files` with int8 weights, as a single self-contained file."""
    with materialized(files) as directory:
        output = directory / "quantized" / QUANTIZED_FILE
        output.parent.mkdir()
        level = logging.getLogger(_QUANTIZER_LOGGER).level
        logging.getLogger(_QUANTIZER_LOGGER).setLevel(logging.WARNING)
        logging.getLogger().addFilter(_skip_preprocessing_advice)
        try:
            quantize_dynamic(
                Path(directory / MODEL_FILE),
                output,
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
            )
        finally:
            logging.getLogger(_QUANTIZER_LOGGER).setLevel(level)
            logging.getLogger().removeFilter(_skip_preprocessing_advice)
        return read_folder_files(output.parent)


def _skip_preprocessing_advice(record: logging.LogRecord) -> bool:
    """onnxruntime advises shape-inference pre-processing on the root logger for every call; its symbolic
    shape inference fails on the dynamo exporter's graphs, and the quantized model is measured anyway."""
    return not record.getMessage().startswith("Please consider to run pre-processing")


def quantize_trained(
    trained: TrainedModel,
    *,
    max_degradation: float = DEFAULT_MAX_DEGRADATION,
    per_channel: bool = True,
    min_speedup: float = DEFAULT_MIN_INT8_SPEEDUP,
) -> TrainedModel:
    """An int8 version of `trained`, evaluated on its test set, with the metric delta in its manifest, and
    timed against fp32 on the recipe's benchmark input (its speedup in the params, which the publishing
    gate holds against `min_speedup`).

    Its feature importance is measured again on the int8 graph, which is what it claims to describe; the
    training means are the data's, not the graph's, so they carry over from the fp32 draft.

    Per-channel weight scales by default: measured here they lose far less than one scale per tensor
    (MiniLM's worst-case cosine to fp32: 0.976 against 0.903). The choice is fixed up front rather than
    picked by the test score, which would bias the very number the gate checks."""
    if not max_degradation >= 0:
        raise InvalidInput(f"quantization: max_degradation: expected a number >= 0, got {max_degradation!r}")
    if not min_speedup >= 0:
        raise InvalidInput(f"quantization: min_speedup: expected a number >= 0, got {min_speedup!r}")
    draft = trained.draft
    metric = draft.primary_metric
    if metric is None or metric not in draft.metrics or draft.task is None:
        raise InvalidInput(
            f"quantization: expected a model with a task and a measured primary metric, got {metric!r}"
        )
    graph_files = {path: trained.files[path] for path in (draft.model_file, *draft.model_data_files)}
    reference = torch_outputs(trained.module, trained.test_inputs, trained.graph)
    files = quantize_int8(graph_files, per_channel=per_channel)
    check_onnx(files)
    session = open_session(files)
    served = onnx_outputs(session, trained.test_inputs)
    speed = measure_int8_speed(
        graph_files,
        files,
        benchmark_feeds(trained.test_inputs, recipe(trained.recipe).benchmark_batch),
        min_speedup=min_speedup,
    )
    metrics, evaluation = evaluate(
        draft.task,  # type: ignore[arg-type]  # set from the recipe's Task
        served[0],
        targets=trained.fit.test_targets,
        reference=reference[0],
        labels=trained.fit.details.labels,
    )
    quantization = Quantization(
        per_channel=per_channel,
        metric=metric,
        fp32_value=draft.metrics[metric],
        quantized_value=metrics[metric],
        delta=metrics[metric] - draft.metrics[metric],
        max_degradation=max_degradation,
    )
    quantized_draft = draft.model_copy(
        update={
            "description": f"{draft.description} (dynamic int8 quantization)",
            "model_data_files": external_data_files(files),
            "signature": signature_of(session),
            "metrics": metrics,
            "evaluation": evaluation,
            "params": {
                **draft.params,
                "quantization": "int8-dynamic",
                "per_channel": per_channel,
                **speed.as_params(),
            },
            "parity": None,
            "quantization": quantization,
            "feature_importance": measure_feature_importance(
                session, trained.fit, task=draft.task, metric=metric, goal=draft.primary_metric_goal
            ),
        }
    )
    extras = {
        path: data
        for path, data in trained.files.items()
        if path not in graph_files and not path.endswith((".md", ".png"))
    }
    all_files = {**files, **extras}
    all_files.update(render_report(report_for(trained.recipe, quantized_draft, trained.fit, trained.search)))
    return dataclasses.replace(trained, files=all_files, draft=quantized_draft)


def with_base_version(trained: TrainedModel, base_version: int) -> TrainedModel:
    """Record the fp32 version the int8 one was made from, once the registry has numbered it."""
    quantization = trained.draft.quantization
    if quantization is None:
        return trained
    draft = trained.draft.model_copy(
        update={"quantization": quantization.model_copy(update={"base_version": base_version})}
    )
    files = dict(trained.files)
    files.update(render_report(report_for(trained.recipe, draft, trained.fit, trained.search)))
    return dataclasses.replace(trained, draft=draft, files=files)
