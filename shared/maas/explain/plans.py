"""Which evaluations an explanation of numeric inputs runs: the request's parameters read into a Plan.

The feature groups (feature_mask), the occlusion windows and the Shapley permutations are validated here,
and the plan's evaluations are counted against MAAS_EXPLAIN_MAX_EVALS before any of them runs or, for a
Shapley plan far over it, before its permutations are laid out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.errors import InvalidInput
from maas.explain import attribution
from maas.explain.attribution import MAX_EXACT_GROUPS, IntArray, Plan
from maas.explain.batching import Evaluations
from maas.explain.parameters import MAX_ECHOED_INDEX, ExplainParameters

# Permutation steps a Shapley plan may lay out (samples x (groups + 1) x groups booleans) before the
# distinct coalitions among them are counted against MAAS_EXPLAIN_MAX_EVALS.
MAX_PLAN_CELLS = 1 << 24
# A Shapley plan is laid out (then its distinct coalitions counted exactly) only when the upper bound of
# its evaluations is within this multiple of MAAS_EXPLAIN_MAX_EVALS; past it, the bound alone refuses it.
PLANNING_SLACK = 4
# Feature group ids are labels, any int64 that is not negative.
MAX_GROUP_ID = 2**63 - 1


def tensor_plan(
    evaluations: Evaluations, parameters: ExplainParameters, row_shapes: dict[str, tuple[int, ...]]
) -> tuple[Plan, dict[str, Any]]:
    """The method's plan and the settings it echoes, once its evaluations fit MAAS_EXPLAIN_MAX_EVALS."""
    rows = len(evaluations.targets)
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
        window, stride = occlusion_window(parameters, row_shape)
        windows = attribution.occlusion_windows(row_shape, window, stride)
        evaluations.check_budget(
            rows * (windows + 1), f"{rows:,} rows x ({windows:,} windows + 1 unperturbed)"
        )
        return attribution.OcclusionPlan(row_shape, window, stride), {
            "method": method,
            "window": window,
            "stride": stride,
            "windows": windows,
        }
    for name in ("window", "stride"):
        if getattr(parameters, name) is not None:
            raise InvalidInput(f"parameters.{name}: used by occlusion only, got it with method '{method}'")
    element_group = feature_groups(parameters.feature_mask, row_shapes)
    groups = attribution.group_count(element_group)
    if method == "ablation":
        evaluations.check_budget(
            rows * (groups + 1), f"{rows:,} rows x ({groups:,} feature groups + 1 unperturbed)"
        )
        return attribution.AblationPlan(element_group), {"method": method, "feature_groups": groups}
    return _shapley_plan(evaluations, parameters, element_group)


def _shapley_plan(
    evaluations: Evaluations, parameters: ExplainParameters, element_group: IntArray
) -> tuple[Plan, dict[str, Any]]:
    rows = len(evaluations.targets)
    groups = attribution.group_count(element_group)
    if parameters.exact:
        if groups > MAX_EXACT_GROUPS:
            raise InvalidInput(
                f"parameters.exact: expected at most {MAX_EXACT_GROUPS} feature groups for exact Shapley "
                f"values ({MAX_EXACT_GROUPS}! permutations), got {groups}; group features with "
                "feature_mask, or sample with n_samples"
            )
        permutations = attribution.all_permutations(groups)
        settings: dict[str, Any] = {"method": "shapley", "exact": True, "permutations": len(permutations)}
    else:
        samples = parameters.n_samples
        bound = attribution.shapley_evaluations_bound(groups, samples)
        if rows * bound > PLANNING_SLACK * evaluations.limits.max_evaluations:
            # Far over: refused from the count's upper bound, before any permutation is laid out.
            evaluations.check_budget(
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
        permutations = attribution.sampled_permutations(groups, samples, parameters.seed)
        settings = {"method": "shapley", "exact": False, "n_samples": samples, "seed": parameters.seed}
    plan = attribution.ShapleyPlan(element_group, permutations)
    per_row = plan.evaluations_per_row
    evaluations.check_budget(
        rows * per_row,
        f"{rows:,} rows x {per_row:,}: the distinct coalitions of {len(permutations):,} permutations of "
        f"{groups:,} feature groups",
    )
    return plan, {**settings, "feature_groups": groups}


def occlusion_window(
    parameters: ExplainParameters, row_shape: tuple[int, ...]
) -> tuple[list[int], list[int]]:
    """The window and stride over every dimension of a row: leading dimensions are covered whole."""
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


def feature_groups(
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
