"""Explain one request on a loaded model: predictions, plus an attribution for every input element.

Every perturbation a method needs is stacked into rows and run through onnxruntime in batches of
MAAS_EXPLAIN_BATCH_ROWS, so an explanation costs a few large runs rather than one per perturbation. The
number of rows is known before anything runs, and a request over MAAS_EXPLAIN_MAX_EVALS is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.config import ENV_EXPLAIN_MAX_EVALS, Settings
from maas.datatypes import BY_V2
from maas.errors import InvalidInput
from maas.explain.attribution import (
    MAX_EXACT_GROUPS,
    AblationPlan,
    BoolArray,
    FloatArray,
    IntArray,
    OcclusionPlan,
    Plan,
    ShapleyPlan,
    all_permutations,
    group_count,
    occlusion_windows,
    sampled_permutations,
    shapley_evaluations_bound,
)
from maas.explain.parameters import ExplainParameters
from maas.infer_types import InferenceRequest, InferenceResponse, Tensor
from maas.registry.manifest import Manifest
from maas.runtime import (
    Deadline,
    LoadedModel,
    check_inputs,
    check_requested_outputs,
    token_rows_per_run,
)
from maas.runtime.text import TokenizedTexts
from maas.signature import TensorSpec

# The response parameter holding the method's settings, and the suffixes of the tensors it adds.
EXPLANATION = "explanation"
ATTRIBUTION_SUFFIX = "_attribution"
TOKENS_SUFFIX = "_tokens"
# Permutation steps a Shapley plan may lay out (samples x (groups + 1) x groups booleans) before the
# distinct coalitions among them are counted against MAAS_EXPLAIN_MAX_EVALS.
MAX_PLAN_CELLS = 1 << 24
# A Shapley plan is laid out (then its distinct coalitions counted exactly) only when the upper bound of
# its evaluations is within this multiple of MAAS_EXPLAIN_MAX_EVALS; past it, the bound alone refuses it.
PLANNING_SLACK = 4
# Elements one run's perturbed rows may hold: a large row (an image) gets fewer rows per run.
MAX_RUN_ELEMENTS = 1 << 24
# An out-of-range target is named up to this size; a longer number is not echoed.
MAX_ECHOED_INDEX = 10**12
# Feature group ids are labels, any int64 that is not negative.
MAX_GROUP_ID = 2**63 - 1
# Labels listed in an error about an unknown target; a model with more gets the first ones and a count.
MAX_LISTED_LABELS = 20


@dataclass(frozen=True, slots=True)
class ExplainLimits:
    max_evaluations: int
    batch_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ExplainLimits:
        return cls(settings.explain_max_evaluations, settings.explain_batch_rows)


def explain_loaded(
    model: LoadedModel,
    request: InferenceRequest,
    parameters: ExplainParameters,
    limits: ExplainLimits,
    *,
    deadline: Deadline | None = None,
) -> InferenceResponse:
    """The request's predictions, with the attributions of `parameters.target` of the explained output."""
    signature = model.signature
    check_inputs(model.name, signature, request.inputs)
    requested = check_requested_outputs(model.name, signature, request.outputs)
    explained = _explained_output(model, parameters.output)
    datatypes = {spec.name: spec.datatype for spec in signature.outputs}
    _check_names_are_free(model, datatypes)
    inputs = {tensor.name: tensor.array for tensor in request.inputs}
    names = list(dict.fromkeys([*requested, explained.name]))
    # A text model is tokenized once: its predictions and its perturbations start from the same ids.
    tokenized = (
        None if model.tokenizer is None else model.tokenize_with_tokens(inputs[model.tokenizer.input_name])
    )
    if tokenized is None:
        predictions = model.run(inputs, names, deadline=deadline)
    else:
        predictions = model.run_token_ids(tokenized.feeds, names, deadline=deadline)
    arrays = dict(zip(names, predictions, strict=True))
    predicted = arrays[explained.name]
    rows = _row_count(request.inputs[0].array, predicted, explained.name)
    targets = _targets(parameters.target, predicted.reshape(rows, -1), model.manifest, explained.name)
    context = _Context(model, explained.name, targets, limits, deadline)
    if tokenized is None:
        attributions, settings = _explain_tensors(context, inputs, parameters)
    else:
        attributions, settings = _explain_text(context, tokenized, parameters)
    return InferenceResponse(
        model_name=model.name,
        model_version=model.version,
        outputs=[Tensor(name, datatypes[name], arrays[name]) for name in requested] + attributions,
        id=request.id,
        parameters={
            EXPLANATION: {
                "output": explained.name,
                "target": targets.tolist(),
                **settings,
                "attributions": [tensor.name for tensor in attributions],
            }
        },
    )


def _check_names_are_free(model: LoadedModel, outputs: dict[str, str]) -> None:
    """Attribution tensors sit beside the model's outputs, so none may share an output's name."""
    if model.tokenizer is not None:
        text = model.tokenizer.input_name
        added = [text + TOKENS_SUFFIX, text + ATTRIBUTION_SUFFIX]
    else:
        added = [spec.name + ATTRIBUTION_SUFFIX for spec in model.signature.inputs]
    clashes = [name for name in added if name in outputs]
    if clashes:
        raise InvalidInput(
            f"model '{model.name}': its outputs {clashes} have the names explanations use; "
            "explanations cannot be served for it"
        )


@dataclass(frozen=True, slots=True)
class _Context:
    model: LoadedModel
    output: str
    targets: IntArray
    limits: ExplainLimits
    deadline: Deadline | None


# ---- tensors


def _explain_tensors(
    context: _Context, inputs: dict[str, npt.NDArray[Any]], parameters: ExplainParameters
) -> tuple[list[Tensor], dict[str, Any]]:
    specs = context.model.signature.inputs
    for spec in specs:
        if BY_V2[spec.datatype].numpy == np.object_:
            raise InvalidInput(
                f"input '{spec.name}': explanations perturb numeric inputs, got {spec.datatype}; "
                "only text models' BYTES inputs are explained, token by token"
            )
    rows = len(context.targets)
    row_shapes = {spec.name: tuple(inputs[spec.name].shape[1:]) for spec in specs}
    for spec in specs:
        if inputs[spec.name].shape[0] != rows:
            raise InvalidInput(
                f"input '{spec.name}': expected {rows} rows like the explained output, "
                f"got {inputs[spec.name].shape[0]}"
            )
    flat = {name: inputs[name].reshape(rows, -1) for name in row_shapes}
    if isinstance(parameters.baseline, dict):
        unknown = sorted(set(parameters.baseline) - set(row_shapes))
        if unknown:
            raise InvalidInput(
                f"parameters.baseline: expected values for inputs among {list(row_shapes)}, got unknown "
                f"input(s) {[key[:64] for key in unknown[:5]]}"
            )
    baselines = {
        name: _baseline(parameters.baseline, name, inputs[name], context.model.manifest)
        for name in row_shapes
    }
    plan, settings = _tensor_plan(context, parameters, row_shapes)
    per_row = plan.evaluations_per_row
    perturbed = [
        _Perturbed(name, flat[name], baselines[name], row_shapes[name], spec.shape[0])
        for name, spec in zip(row_shapes, specs, strict=True)
    ]
    scores, runs = _evaluate(
        context,
        perturbed,
        {},
        row_of_job=np.repeat(np.arange(rows), per_row),
        masks_of_jobs=lambda jobs: plan.masks(jobs % per_row),
    )
    attributions = plan.attributions(scores.reshape(rows, per_row))
    tensors: list[Tensor] = []
    offset = 0
    for name, shape in row_shapes.items():
        width = math.prod(shape)
        # Attributions are FP32 like most models' inputs; an FP64 input keeps its precision.
        datatype = "FP64" if inputs[name].dtype == np.float64 else "FP32"
        part = attributions[:, offset : offset + width].reshape(rows, *shape).astype(BY_V2[datatype].numpy)
        offset += width
        tensors.append(Tensor(name + ATTRIBUTION_SUFFIX, datatype, part))
    settings.update(
        baseline=_describe_baseline(parameters.baseline),
        evaluations=rows * per_row,
        model_runs=runs,
    )
    return tensors, settings


def _tensor_plan(
    context: _Context, parameters: ExplainParameters, row_shapes: dict[str, tuple[int, ...]]
) -> tuple[Plan, dict[str, Any]]:
    """The method's plan, once its evaluations are known to fit MAAS_EXPLAIN_MAX_EVALS."""
    rows = len(context.targets)
    method = parameters.method
    if method == "occlusion":
        if parameters.feature_mask is not None:
            raise InvalidInput(
                "parameters.feature_mask: occlusion slides windows instead of groups; "
                "use method 'ablation' or 'shapley' with a feature_mask"
            )
        if len(row_shapes) != 1:
            raise InvalidInput(
                f"parameters.method: occlusion slides a window over one input, got a model with "
                f"{len(row_shapes)} inputs; use 'ablation' or 'shapley' with a feature_mask"
            )
        (row_shape,) = row_shapes.values()
        window, stride = _window(parameters, row_shape)
        windows = occlusion_windows(row_shape, window, stride)
        _check_budget(context, rows * (windows + 1), f"{rows:,} rows x ({windows:,} windows + 1 unperturbed)")
        return OcclusionPlan(row_shape, window, stride), {
            "method": method,
            "window": window,
            "stride": stride,
            "windows": windows,
        }
    for name in ("window", "stride"):
        if getattr(parameters, name) is not None:
            raise InvalidInput(f"parameters.{name}: used by occlusion only, got it with method '{method}'")
    element_group = _feature_groups(parameters.feature_mask, row_shapes)
    groups = group_count(element_group)
    if method == "ablation":
        _check_budget(
            context, rows * (groups + 1), f"{rows:,} rows x ({groups:,} feature groups + 1 unperturbed)"
        )
        return AblationPlan(element_group), {"method": method, "feature_groups": groups}
    if parameters.exact:
        if groups > MAX_EXACT_GROUPS:
            raise InvalidInput(
                f"parameters.exact: expected at most {MAX_EXACT_GROUPS} feature groups for exact Shapley "
                f"values ({MAX_EXACT_GROUPS}! permutations), got {groups}; group features with "
                "feature_mask, or sample with n_samples"
            )
        permutations = all_permutations(groups)
        settings: dict[str, Any] = {"method": method, "exact": True, "permutations": len(permutations)}
    else:
        samples = parameters.n_samples
        bound = shapley_evaluations_bound(groups, samples)
        if rows * bound > PLANNING_SLACK * context.limits.max_evaluations:
            # Far over: refused from the count's upper bound, before any permutation is laid out.
            _check_budget(
                context,
                rows * bound,
                f"{rows:,} rows x up to {bound:,}: the coalitions of {samples:,} permutations of "
                f"{groups:,} feature groups",
            )
        most = MAX_PLAN_CELLS // max((groups + 1) * groups, 1)
        if samples > most:
            raise InvalidInput(
                f"parameters.n_samples: expected at most {most:,} permutations of {groups:,} feature groups, "
                f"got {samples:,}"
            )
        permutations = sampled_permutations(groups, samples, parameters.seed)
        settings = {"method": method, "exact": False, "n_samples": samples, "seed": parameters.seed}
    plan = ShapleyPlan(element_group, permutations)
    per_row = plan.evaluations_per_row
    _check_budget(
        context,
        rows * per_row,
        f"{rows:,} rows x {per_row:,}: the distinct coalitions of {len(permutations):,} permutations of "
        f"{groups:,} feature groups",
    )
    return plan, {**settings, "feature_groups": groups}


def _window(parameters: ExplainParameters, row_shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    if parameters.window is None:
        raise InvalidInput(
            f"parameters.window: required for occlusion, e.g. 2 (a 2x2 square) or a list of sizes over the "
            f"last dimensions of a row of shape {list(row_shape)}"
        )
    rank = len(row_shape)
    window = _per_dimension(parameters.window, "window", rank)
    stride_given = parameters.stride if parameters.stride is not None else 1
    stride = _per_dimension(stride_given, "stride", rank, default_span=len(window))
    if len(stride) != len(window):
        raise InvalidInput(
            f"parameters.stride: expected {len(window)} values like the window, got {len(stride)}"
        )
    leading = list(row_shape[: rank - len(window)])
    full_window, full_stride = leading + window, [1] * len(leading) + stride
    for size, span, step in zip(row_shape, full_window, full_stride, strict=True):
        if not 1 <= span <= size:
            raise InvalidInput(
                f"parameters.window: expected sizes between 1 and the row's dimensions {list(row_shape)}, "
                f"got {_sizes(window)}"
            )
        if step < 1:
            raise InvalidInput(f"parameters.stride: expected positive steps, got {_sizes(stride)}")
        # Captum's rule: a step longer than the window would skip elements that no window ever covers.
        if step > span and span < size:
            raise InvalidInput(
                f"parameters.stride: expected steps no longer than the window {window}, got {_sizes(stride)}"
            )
    return full_window, full_stride


def _sizes(values: list[int]) -> str:
    """Window or stride sizes for a message; a number too long to be a size is not echoed."""
    if all(abs(value) <= MAX_ECHOED_INDEX for value in values):
        return str(values)
    return "a size far beyond any row"


def _per_dimension(
    value: int | list[int], name: str, rank: int, default_span: int | None = None
) -> list[int]:
    if isinstance(value, int):
        span = default_span if default_span is not None else min(rank, 2)
        return [value] * span
    if not 1 <= len(value) <= rank:
        raise InvalidInput(
            f"parameters.{name}: expected 1 to {rank} sizes (one per trailing dimension of a row), "
            f"got {len(value)}"
        )
    return list(value)


def _feature_groups(
    mask: list[Any] | dict[str, list[Any]] | None, row_shapes: dict[str, tuple[int, ...]]
) -> IntArray:
    """Each element's feature group, numbered 0..G-1 in order of first appearance across the inputs."""
    if mask is None:
        return np.arange(sum(math.prod(shape) for shape in row_shapes.values()), dtype=np.int64)
    if isinstance(mask, list):
        if len(row_shapes) != 1:
            raise InvalidInput(
                f"parameters.feature_mask: expected an object with a mask per input {list(row_shapes)}, "
                "got one array"
            )
        mask = {next(iter(row_shapes)): mask}
    unknown = sorted(set(mask) - set(row_shapes))
    if unknown:
        raise InvalidInput(
            f"parameters.feature_mask: expected masks for inputs among {list(row_shapes)}, got unknown "
            f"input(s) {[name[:64] for name in unknown[:5]]}"
        )
    parts: list[IntArray] = []
    unmasked = 0
    for name, shape in row_shapes.items():
        given = mask.get(name)
        if given is None:
            # An input without a mask keeps one group per element. Negative ids, which no mask may use,
            # keep them apart from every given id without arithmetic on the given ones (2**63 - 1 is one).
            size = math.prod(shape)
            parts.append(-1 - np.arange(unmasked, unmasked + size, dtype=np.int64))
            unmasked += size
            continue
        parts.append(_mask_ids(given, name, shape))
    ids = np.concatenate(parts)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    renumbered = np.empty_like(order)
    renumbered[order] = np.arange(len(order))
    return renumbered[inverse.reshape(-1)].astype(np.int64)


def _mask_ids(given: list[Any], name: str, shape: tuple[int, ...]) -> IntArray:
    where = f"parameters.feature_mask for input '{name[:64]}'"
    try:
        array = np.asarray(given)
    except ValueError:
        raise InvalidInput(f"{where}: expected a rectangular array of integer group ids") from None
    if tuple(array.shape) == (1, *shape):
        array = array[0]
    if tuple(array.shape) != shape:
        raise InvalidInput(
            f"{where}: expected the shape of one row {list(shape)} (or [1, ...]), got {list(array.shape)}"
        )
    if _integers_beyond_int64(given, array):
        raise InvalidInput(f"{where}: expected group ids in [0, {MAX_GROUP_ID}], got one outside")
    if array.dtype.kind not in "iu":
        raise InvalidInput(f"{where}: expected integer group ids, got {_kind_name(array)}")
    if array.size and (int(array.min()) < 0 or int(array.max()) > MAX_GROUP_ID):
        raise InvalidInput(f"{where}: expected group ids in [0, {MAX_GROUP_ID}], got one outside")
    return array.reshape(-1).astype(np.int64)


def _integers_beyond_int64(given: list[Any], array: npt.NDArray[Any]) -> bool:
    """Whether numpy made objects or floats of integers no integer dtype holds together (past 64 bits,
    2**63 beside -1), or of whole numbers a JSON reader gave as floats past int64 (orjson reads 2**64 so):
    an id out of range either way, not a fractional one."""
    if array.dtype.kind == "O":
        return all(type(item) is int for item in np.asarray(given, dtype=object).reshape(-1).tolist())
    if array.dtype.kind != "f" or not np.isfinite(array).all() or not np.all(array == np.round(array)):
        return False
    if all(type(item) is int for item in np.asarray(given, dtype=object).reshape(-1).tolist()):
        return True
    return bool(array.size) and (float(array.max()) >= 2.0**63 or float(array.min()) < -(2.0**63))


def _kind_name(array: npt.NDArray[Any]) -> str:
    return {"b": "booleans", "f": "fractional numbers", "U": "strings", "O": "mixed values"}.get(
        array.dtype.kind, f"{array.dtype.kind!r}-kind values"
    )


def _baseline(
    baseline: str | int | float | list[Any] | dict[str, Any] | None,
    name: str,
    values: npt.NDArray[Any],
    manifest: Manifest,
) -> npt.NDArray[Any]:
    """[N, E] replacement values for input `name`, in its own dtype."""
    rows = values.shape[0]
    row_shape = values.shape[1:]
    if isinstance(baseline, dict):
        if name not in baseline:
            raise InvalidInput(
                f"parameters.baseline: expected a value for input '{name[:64]}' among the object's keys"
            )
        baseline = baseline[name]
    where = f"parameters.baseline for input '{name[:64]}'"
    if baseline is None or baseline == "zeros":
        replacement: npt.NDArray[Any] = np.zeros(row_shape)
    elif baseline == "mean":
        replacement = _training_mean(manifest, name, row_shape)
    elif isinstance(baseline, str):
        raise InvalidInput(f"{where}: expected 'zeros', 'mean', a number or an array, got '{baseline[:16]}'")
    else:
        try:
            given = np.asarray(baseline, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(f"{where}: expected a number or a rectangular array of numbers") from None
        if given.shape == values.shape:
            return _in_dtype(given, values.dtype, where).reshape(rows, -1)
        try:
            replacement = np.broadcast_to(given, row_shape)
        except ValueError:
            raise InvalidInput(
                f"{where}: expected a number, one row's shape {list(row_shape)} or the input's "
                f"{list(values.shape)}, got shape {list(given.shape)}"
            ) from None
    row = _in_dtype(np.asarray(replacement, dtype=np.float64), values.dtype, where).reshape(1, -1)
    return np.broadcast_to(row, (rows, row.shape[1]))


def _in_dtype(given: FloatArray, dtype: np.dtype[Any], where: str) -> npt.NDArray[Any]:
    """The baseline in the input's dtype, refusing values it cannot hold rather than wrapping them."""
    if not np.isfinite(given).all():
        raise InvalidInput(f"{where}: expected finite numbers, got null, NaN or infinity")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # Compared with powers of two, which float64 holds exactly: int64's max is not one of its values
        # (2**63 - 1 reads as 2**63), so `<= info.max` would let 2**63 through to wrap to -2**63.
        bits = dtype.itemsize * 8
        low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1)) if dtype.kind == "i" else (0.0, 2.0**bits)
        if not (
            np.all(given == np.round(given)) and given.min(initial=0) >= low and given.max(initial=0) < high
        ):
            raise InvalidInput(
                f"{where}: expected whole numbers in [{info.min}, {info.max}] for a {dtype.name} input"
            )
    elif dtype.kind == "b" and not np.isin(given, (0, 1)).all():
        raise InvalidInput(f"{where}: expected 0 or 1 for a boolean input")
    elif dtype.kind == "f" and np.abs(given).max(initial=0) > np.finfo(dtype).max:
        raise InvalidInput(f"{where}: expected numbers within the range of a {dtype.name} input")
    return given.astype(dtype)


def _training_mean(manifest: Manifest, name: str, row_shape: tuple[int, ...]) -> npt.NDArray[Any]:
    means = manifest.input_means.get(name)
    if means is None and manifest.preprocessing is not None:
        for normalization in manifest.preprocessing.normalization:
            if normalization.input == name:
                means = normalization.mean
    if means is None:
        raise InvalidInput(
            f"parameters.baseline: 'mean' needs the training mean of input '{name[:64]}', which model "
            f"'{manifest.name}' v{manifest.version} does not record; use 'zeros', a number or an array"
        )
    array = np.asarray(means, dtype=np.float64)
    if array.size == 1:
        return np.full(row_shape, float(array.reshape(-1)[0]))
    if array.size != math.prod(row_shape):
        raise InvalidInput(
            f"parameters.baseline: the recorded training mean of input '{name[:64]}' has {array.size} "
            f"values, but a row has {math.prod(row_shape)}"
        )
    return array.reshape(row_shape)


def _describe_baseline(baseline: object) -> object:
    if baseline is None:
        return "zeros"
    if isinstance(baseline, str | int | float):
        return baseline
    return "given"


# ---- text


def _explain_text(
    context: _Context, encoded: TokenizedTexts, parameters: ExplainParameters
) -> tuple[list[Tensor], dict[str, Any]]:
    tokenizer = context.model.tokenizer
    assert tokenizer is not None
    name = tokenizer.input_name
    if parameters.method != "ablation":
        raise InvalidInput(
            f"parameters.method: model '{context.model.name}' takes text, which is explained by token "
            f"ablation; expected 'ablation', got '{parameters.method}'"
        )
    for field in ("feature_mask", "window", "stride"):
        if getattr(parameters, field) is not None:
            raise InvalidInput(f"parameters.{field}: not used for text, which is explained token by token")
    replacement = _replacement_token(parameters.baseline, tokenizer.mask_id, tokenizer.pad_id)
    ids_name = tokenizer.preprocessing.input_ids
    ids = encoded.feeds[ids_name]
    rows, width = ids.shape
    # Each text's jobs: the unperturbed ids (position -1), then one job per token of its own.
    position_of_job = (
        np.concatenate([np.array([-1, *content], dtype=np.int64) for content in encoded.content])
        if rows
        else np.zeros(0, dtype=np.int64)
    )
    counts = [len(content) + 1 for content in encoded.content]
    total = len(position_of_job)
    _check_budget(context, total, f"{rows:,} texts: their {total - rows:,} tokens + 1 unperturbed run each")
    columns = np.arange(width)
    graph_specs = {spec.name: spec for spec in context.model.manifest.signature.inputs}
    perturbed = [
        _Perturbed(
            ids_name,
            ids,
            np.full_like(ids, replacement),
            (width,),
            graph_specs[ids_name].shape[0],
        )
    ]
    fixed = {key: value for key, value in encoded.feeds.items() if key != ids_name}
    scores, runs = _evaluate(
        context,
        perturbed,
        fixed,
        row_of_job=np.repeat(np.arange(rows), counts),
        masks_of_jobs=lambda jobs: columns[None, :] == position_of_job[jobs][:, None],
        max_rows=token_rows_per_run(width),
    )
    longest = max((len(content) for content in encoded.content), default=0)
    tokens = np.full((rows, longest), "", dtype=object)
    attribution = np.zeros((rows, longest), dtype=np.float32)
    start = 0
    for row, content in enumerate(encoded.content):
        own = scores[start : start + len(content) + 1]
        start += len(content) + 1
        tokens[row, : len(content)] = encoded.tokens[row]
        attribution[row, : len(content)] = own[0] - own[1:]
    return [
        Tensor(name + TOKENS_SUFFIX, "BYTES", tokens),
        Tensor(name + ATTRIBUTION_SUFFIX, "FP32", attribution),
    ], {
        "method": "ablation",
        "unit": "token",
        "baseline": "mask" if replacement == tokenizer.mask_id else "pad",
        "evaluations": total,
        "model_runs": runs,
    }


def _replacement_token(baseline: object, mask_id: int | None, pad_id: int) -> int:
    if baseline is None:
        return mask_id if mask_id is not None else pad_id
    if baseline == "mask":
        if mask_id is None:
            raise InvalidInput(
                "parameters.baseline: 'mask' needs a [MASK] token, which this tokenizer lacks; use 'pad'"
            )
        return mask_id
    if baseline == "pad":
        return pad_id
    raise InvalidInput(
        "parameters.baseline: expected 'mask' or 'pad' for a text input, the token that replaces each one"
    )


# ---- running the perturbations


@dataclass(frozen=True, eq=False)
class _Perturbed:
    """One graph input under perturbation: [N, E] values and baselines, and one row's shape."""

    name: str
    values: npt.NDArray[Any]
    baseline: npt.NDArray[Any]
    row_shape: tuple[int, ...]
    # The graph's batch dimension: -1 when any, else the exact number of rows each run must have.
    graph_batch: int


def _evaluate(
    context: _Context,
    perturbed: Sequence[_Perturbed],
    fixed: dict[str, npt.NDArray[Any]],
    *,
    row_of_job: IntArray,
    masks_of_jobs: Callable[[IntArray], BoolArray],
    max_rows: int | None = None,
) -> tuple[FloatArray, int]:
    """The target score of every job (a request row under one mask), and the number of runs it took.

    `max_rows` caps the rows of one run further (a text model's, by the tokens one run may take)."""
    model = context.model
    total = len(row_of_job)
    graph_batch = perturbed[0].graph_batch
    row_elements = max(sum(item.values.shape[1] for item in perturbed), 1)
    chunk = (
        graph_batch
        if graph_batch > 0
        else min(
            context.limits.batch_rows,
            max(1, MAX_RUN_ELEMENTS // row_elements),
            max_rows if max_rows is not None else context.limits.batch_rows,
        )
    )
    scores = np.empty(total, dtype=np.float64)
    runs = 0
    for start in range(0, total, chunk):
        jobs = np.arange(start, min(start + chunk, total))
        rows = row_of_job[jobs]
        masks = masks_of_jobs(jobs)
        feeds: dict[str, npt.NDArray[Any]] = {}
        offset = 0
        for item in perturbed:
            width = item.values.shape[1]
            own = masks[:, offset : offset + width]
            offset += width
            mixed = np.where(own, item.baseline[rows], item.values[rows])
            feeds[item.name] = mixed.reshape(len(jobs), *item.row_shape)
        for name, values in fixed.items():
            feeds[name] = values[rows]
        if graph_batch > 0 and len(jobs) < graph_batch:
            # A graph with a fixed batch size gets full runs; the padding rows' scores are dropped.
            feeds = {name: _pad_rows(array, graph_batch) for name, array in feeds.items()}
        (output,) = model.run_graph(feeds, [context.output], deadline=context.deadline)
        runs += 1
        if output.ndim == 0 or output.shape[0] != max(len(jobs), graph_batch):
            raise InvalidInput(
                f"parameters.output: '{context.output[:64]}' answered {list(output.shape)} for "
                f"{max(len(jobs), graph_batch)} rows; explanations need one output row per input row"
            )
        flat = output.reshape(output.shape[0], -1)[: len(jobs)].astype(np.float64)
        scores[jobs] = flat[np.arange(len(jobs)), context.targets[rows]]
    return scores, runs


def _pad_rows(array: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    return np.concatenate([array, np.repeat(array[-1:], rows - len(array), axis=0)])


def _check_budget(context: _Context, needed: int, breakdown: str) -> None:
    limit = context.limits.max_evaluations
    if needed > limit:
        raise InvalidInput(
            f"parameters: this explanation needs {needed:,} model evaluations ({breakdown}), expected at "
            f"most {limit:,} ({ENV_EXPLAIN_MAX_EVALS}), {needed - limit:,} over; send fewer rows, group "
            "features with feature_mask, lower n_samples or use a larger window or stride"
        )


# ---- outputs and targets


def _row_count(first_input: npt.NDArray[Any], predicted: npt.NDArray[Any], output: str) -> int:
    """Rows to explain: the request's, which the explained output must answer one for one."""
    rows = first_input.shape[0] if first_input.ndim else 0
    if rows == 0:
        raise InvalidInput("inputs: expected at least one row to explain, got none")
    if predicted.ndim == 0 or predicted.shape[0] != rows:
        raise InvalidInput(
            f"parameters.output: '{output[:64]}' has shape {list(predicted.shape)} for {rows} rows; "
            "explanations need an output with one row per input row"
        )
    return rows


def _explained_output(model: LoadedModel, name: str | None) -> TensorSpec:
    outputs = model.signature.outputs
    if name is None:
        spec = outputs[0]
    else:
        found = [spec for spec in outputs if spec.name == name]
        if not found:
            raise InvalidInput(
                f"parameters.output: expected one of {[spec.name for spec in outputs]} for model "
                f"'{model.name}', got an unknown output"
            )
        spec = found[0]
    if BY_V2[spec.datatype].numpy == np.object_ or spec.datatype == "BOOL":
        raise InvalidInput(
            f"parameters.output: expected a numeric output to explain, got '{spec.name}' ({spec.datatype})"
        )
    return spec


def _targets(
    target: int | str | list[int | str] | None,
    scores: npt.NDArray[Any],
    manifest: Manifest,
    output: str,
) -> IntArray:
    rows, width = scores.shape
    where = f"output '{output}' ({width} value{'s' if width != 1 else ''} per row)"
    if target is None:
        if width == 1:
            return np.zeros(rows, dtype=np.int64)
        if manifest.labels or manifest.task == "classification":
            predicted: IntArray = np.argmax(scores, axis=1).astype(np.int64)
            return predicted
        raise InvalidInput(
            f"parameters.target: required for {where}: expected an output index in [0, {width - 1}]"
        )
    given = target if isinstance(target, list) else [target] * rows
    if len(given) != rows:
        raise InvalidInput(f"parameters.target: expected one target per row ({rows}), got {len(given)}")
    labels = manifest.labels or []
    resolved: list[int] = []
    for item in given:
        index = item
        if isinstance(item, str):
            if item not in labels:
                listed = labels[:MAX_LISTED_LABELS] + (["..."] if len(labels) > MAX_LISTED_LABELS else [])
                raise InvalidInput(
                    f"parameters.target: expected an output index in [0, {width - 1}] or one of the labels "
                    f"{listed}, got an unknown label"
                )
            index = labels.index(item)
        assert isinstance(index, int)
        if not 0 <= index < width:
            got = index if abs(index) <= MAX_ECHOED_INDEX else "one far outside"
            raise InvalidInput(
                f"parameters.target: expected an output index in [0, {width - 1}] for {where}, got {got}"
            )
        resolved.append(index)
    return np.asarray(resolved, dtype=np.int64)
