"""Bring your own module: build it from its factory, load its weights, check it against the declared
signature, export it to ONNX and measure torch/onnxruntime parity on seeded inputs from the input specs.

The result is a TrainedModel like a recipe's, so `publish_trained` refuses it when parity failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maas.datatypes import BY_V2, from_numpy
from maas.errors import InvalidInput
from maas.registry import ManifestDraft, Signature
from maas.signature import TensorSpec
from maas.training.byo.arguments import load_factory
from maas.training.byo.foreign_code import user_code
from maas.training.card import render_report
from maas.training.errors import ModelCheckFailed
from maas.training.export import GraphSpec, export_onnx, measure_parity
from maas.training.lineage import build_lineage
from maas.training.loop import load_checkpoint, load_state_dict_strictly
from maas.training.onnx_checks import check_onnx, external_data_files, open_session, signature_of
from maas.training.pipeline import TrainedModel
from maas.training.recipe import DEFAULT_PARITY_TOLERANCE, FitResult, ModelDetails
from maas.training.report import ModelReport

__all__ = ["SOURCE_MODULE", "export_module"]

SOURCE_MODULE = "byo-module"
BATCH_AXIS = "batch"
# torch.export specialises sizes 0 and 1, so a dynamic axis must be traced at 2 or more to stay dynamic.
EXPORT_BATCH = 2
FIRST_EXPORT_DIM = 3
# Parity runs other dynamic axes at a different size than export did, so a specialised axis shows up.
PARITY_DIM_OFFSET = 2
DEFAULT_SAMPLES = 64
# Integer inputs are usually indices (token ids, categories): small and non-negative fits most tables.
INT_SAMPLE_HIGH = 8


def export_module(
    module_target: str,
    weights: Path | None,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec] | None = None,
    *,
    seed: int = 0,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    samples: int = DEFAULT_SAMPLES,
    description: str = "",
    external_data: bool = False,
    app_dir: Path | None = None,
) -> TrainedModel:
    """Build the module, load its weights, check it against the declared signature, export and check it.

    Like `train_recipe`, a failed parity is recorded rather than raised: `publish_trained` refuses it.
    Publish with an explicit name; `recipe` is `byo:<target>`, which is not a valid model name.
    `weights=None` keeps the factory's own (seeded) initialisation."""
    _check_arguments(inputs, outputs, seed=seed, parity_tolerance=parity_tolerance, samples=samples)
    factory = load_factory(module_target, app_dir=app_dir)
    # The factory's random init is seeded without disturbing the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    weights_sha256 = _load_weights(module, weights, module_target) if weights is not None else None
    module.cpu().eval()

    dynamic_axes = _dynamic_axes(inputs)
    export_sizes = _dynamic_sizes(dynamic_axes, EXPORT_BATCH, 0)
    parity_sizes = _dynamic_sizes(dynamic_axes, samples, PARITY_DIM_OFFSET)
    rng = np.random.default_rng(seed)
    example = _sample_inputs(inputs, dynamic_axes, export_sizes, rng)
    parity_inputs = _sample_inputs(inputs, dynamic_axes, parity_sizes, rng)

    produced = _eager_outputs(module, [spec.name for spec in inputs], example, module_target)
    if outputs is not None:
        _check_outputs(outputs, produced)
    output_names = (
        tuple(spec.name for spec in outputs) if outputs is not None else _default_output_names(len(produced))
    )
    graph = GraphSpec(
        inputs=tuple(spec.name for spec in inputs), outputs=output_names, dynamic_axes=dynamic_axes
    )

    with user_code(f"ONNX export of '{module_target}'"):
        files = export_onnx(module, example, graph, external_data=external_data)
    check_onnx(files)
    session = open_session(files)
    signature = signature_of(session)
    _check_graph(signature, inputs, outputs)
    with user_code(f"parity of '{module_target}' on {samples} seeded samples"):
        parity = measure_parity(module, session, parity_inputs, tolerance=parity_tolerance, spec=graph)

    params: dict[str, Any] = {
        "source": SOURCE_MODULE,
        "factory": module_target,
        "weights_sha256": weights_sha256,
    }
    lineage = build_lineage(f"byo:{module_target}", weights_sha256 or "", seed)
    if weights_sha256 is None:
        lineage = lineage.model_copy(update={"dataset_hash": None})
    description = description or f"A PyTorch module ({module_target}) trained outside maas, exported to ONNX."
    draft = ManifestDraft(
        task=None,
        description=description,
        model_data_files=external_data_files(files),
        signature=signature,
        params=params,
        lineage=lineage,
        parity=parity,
    )
    data_description = "Trained outside maas, on data maas has not seen. " + (
        f"The weights are a state_dict file with sha256 `{weights_sha256}`."
        if weights_sha256
        else "No weights were given: the module keeps the factory's seeded initialisation."
    )
    limitations = (
        "maas neither trained nor evaluated this model, so the card has no test metrics. Parity was "
        f"measured on {samples} seeded random inputs drawn from the declared input specs (floats from "
        f"N(0, 1), integers in [0, {INT_SAMPLE_HIGH})), not on real data."
    )
    fitted = FitResult(
        module=module,
        graph=graph,
        test_inputs=parity_inputs,
        test_targets=None,
        params=params,
        dataset_hash=weights_sha256 or "",
        details=ModelDetails(
            description=description, data_description=data_description, limitations=limitations
        ),
    )
    report = ModelReport.of_draft(
        module_target, draft, task="custom", data_description=data_description, limitations=limitations
    )
    files.update(render_report(report))
    return TrainedModel(
        recipe=f"byo:{module_target}", module=module, graph=graph, files=files, draft=draft, fit=fitted
    )


def _check_arguments(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec] | None,
    *,
    seed: int,
    parity_tolerance: float,
    samples: int,
) -> None:
    if not inputs:
        raise InvalidInput("--input: expected at least one input spec, got none")
    if outputs is not None and not outputs:
        raise InvalidInput("--output: expected at least one output spec when any is given, got none")
    names = [spec.name for spec in (*inputs, *(outputs or ()))]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"--input/--output: expected unique tensor names, got {duplicates} more than once")
    for spec in inputs:
        if spec.datatype == "BYTES":
            raise InvalidInput(
                f"--input '{spec.name}': expected a numeric or BOOL datatype (a module takes tensors), "
                "got BYTES"
            )
        if not spec.shape:
            raise InvalidInput(
                f"--input '{spec.name}': expected rank >= 1 (axis 0 is the batch), got shape []"
            )
    if seed < 0:
        raise InvalidInput(f"seed: expected an integer >= 0, got {seed}")
    if not parity_tolerance > 0:
        raise InvalidInput(f"parity_tolerance: expected a number > 0, got {parity_tolerance}")
    if samples < 1:
        raise InvalidInput(f"samples: expected an integer >= 1, got {samples}")


def _load_weights(module: torch.nn.Module, path: Path, target: str) -> str:
    """Load a weights_only state_dict strictly, naming every key or shape that does not fit; its sha256."""
    if not path.is_file():
        raise InvalidInput(f"--weights: expected a state_dict file at {path}, found none")
    state = load_checkpoint(path)
    load_state_dict_strictly(module, state, f"{path} for '{target}'")
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _dynamic_axes(inputs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    """Every -1 dimension is dynamic: axis 0 is the shared batch, any other is the input's own."""
    return {
        spec.name: {
            axis: BATCH_AXIS if axis == 0 else f"{spec.name}_dim{axis}"
            for axis, dim in enumerate(spec.shape)
            if dim < 0
        }
        for spec in inputs
    }


def _dynamic_sizes(axes: Mapping[str, Mapping[int, str]], batch: int, offset: int) -> dict[str, int]:
    # Distinct sizes for distinct axes, so the tracer never takes two independent axes for one.
    names = list(dict.fromkeys(name for per_input in axes.values() for name in per_input.values()))
    others = [name for name in names if name != BATCH_AXIS]
    sizes = {name: FIRST_EXPORT_DIM + offset + i for i, name in enumerate(others)}
    return {BATCH_AXIS: batch, **sizes}


def _sample_inputs(
    inputs: Sequence[TensorSpec],
    axes: Mapping[str, Mapping[int, str]],
    sizes: Mapping[str, int],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    sampled: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = tuple(sizes[axes[spec.name][axis]] if dim < 0 else dim for axis, dim in enumerate(spec.shape))
        dtype = BY_V2[spec.datatype].numpy
        if dtype.kind == "f":
            sampled[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            sampled[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            sampled[spec.name] = rng.integers(0, INT_SAMPLE_HIGH, shape).astype(dtype)
    return sampled


def _eager_outputs(
    module: torch.nn.Module, names: Sequence[str], example: Mapping[str, np.ndarray], target: str
) -> list[torch.Tensor]:
    shapes = ", ".join(
        f"{name} {_describe(_v2(example[name].dtype), list(example[name].shape))}" for name in names
    )
    with user_code(f"'{target}' forward on example inputs ({shapes})"), torch.inference_mode():
        result = module(*(torch.from_numpy(example[name]) for name in names))
    produced = list(result) if isinstance(result, tuple | list) else [result]
    if not produced or not all(isinstance(item, torch.Tensor) for item in produced):
        got = type(result).__name__
        if isinstance(result, tuple | list):
            got = f"a {got} of {[type(item).__name__ for item in produced]}"
        raise ModelCheckFailed(
            f"outputs of '{target}': expected a tensor or a tuple/list of tensors from forward, got {got}"
        )
    return produced


def _check_outputs(declared: Sequence[TensorSpec], produced: Sequence[torch.Tensor]) -> None:
    """Count, datatype, rank and fixed dimensions, before export: the cheapest place to say what is wrong."""
    if len(produced) != len(declared):
        raise ModelCheckFailed(
            f"outputs: expected {len(declared)} ({[spec.name for spec in declared]}) from the module, "
            f"got {len(produced)}"
        )
    problems = []
    for spec, tensor in zip(declared, produced, strict=True):
        datatype, shape = _torch_v2(tensor.dtype), list(tensor.shape)
        if not _fits(spec, datatype, shape):
            problems.append(
                f"output '{spec.name}': expected {_describe(spec.datatype, spec.shape)}, "
                f"got {_describe(datatype, shape)}"
            )
    if problems:
        raise ModelCheckFailed(f"{'; '.join(problems)} (on an example batch of {EXPORT_BATCH})")


def _check_graph(
    graph: Signature, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec] | None
) -> None:
    """The exported graph must keep the declared contract: a dynamic input axis stays dynamic, and a
    declared fixed size is never contradicted."""
    for kind, declared, exported in (("input", inputs, graph.inputs), ("output", outputs, graph.outputs)):
        if declared is None:
            continue
        if [spec.name for spec in declared] != [spec.name for spec in exported]:
            raise ModelCheckFailed(
                f"exported graph {kind}s: expected {[spec.name for spec in declared]}, "
                f"got {[spec.name for spec in exported]}"
            )
        for want, got in zip(declared, exported, strict=True):
            # An input's declared size is exactly what the graph takes; an output's may be left symbolic
            # by the exporter's shape inference, or be declared -1 for any size.
            dims_agree = all(
                w == g if kind == "input" else (w < 0 or g < 0 or w == g)
                for w, g in zip(want.shape, got.shape, strict=False)
            )
            if want.datatype != got.datatype or len(want.shape) != len(got.shape) or not dims_agree:
                raise ModelCheckFailed(
                    f"exported graph {kind} '{want.name}': expected {_describe(want.datatype, want.shape)}, "
                    f"got {_describe(got.datatype, got.shape)}"
                )


def _fits(spec: TensorSpec, datatype: str, shape: Sequence[int]) -> bool:
    return (
        datatype == spec.datatype
        and len(shape) == len(spec.shape)
        and all(want < 0 or want == got for want, got in zip(spec.shape, shape, strict=True))
    )


def _default_output_names(count: int) -> tuple[str, ...]:
    return ("output",) if count == 1 else tuple(f"output_{i}" for i in range(count))


def _torch_v2(dtype: torch.dtype) -> str:
    try:
        numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        return str(dtype).removeprefix("torch.")  # bfloat16 and friends have no numpy or V2 name
    return _v2(numpy_dtype)


def _v2(dtype: np.dtype[Any]) -> str:
    found = from_numpy(dtype)
    return found.v2 if found is not None else str(dtype)


def _describe(datatype: str, shape: Sequence[int]) -> str:
    return f"{datatype} [{','.join(str(dim) for dim in shape)}]"
