"""Permutation feature importance: how much the primary metric worsens when one feature is shuffled.

Measured on the test set through the onnxruntime session that is published, with the primary metric as
`maas.training.metrics.evaluate` defines it, so an importance is in the same units as the manifest's
metrics and describes the served graph, not the torch module it came from. A feature is one element of
one row of a float input: `input[3]` of a [-1, 10] input, `input[0,3,5]` of a [-1, 1, 8, 8] one.

Only models whose graph inputs are all float tensors and whose task is scored against targets
(regression, classification) get an importance; the others get None. A tokenized text model's inputs are
integer ids tied to the attention mask beside them, so shuffling one position across texts would feed
padding as words and words as padding; an embedding model has no targets whose metric could worsen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from maas.registry import FeatureImportance, GlobalImportance
from maas.training.export import onnx_outputs
from maas.training.metric_goals import MetricGoal, degradation
from maas.training.metrics import Task, evaluate
from maas.training.recipe import FitResult

__all__ = [
    "DEFAULT_REPEATS",
    "DEFAULT_SEED",
    "Score",
    "direct_metric",
    "measure_feature_importance",
    "permutation_importance",
]

DEFAULT_REPEATS = 5
# Fixed rather than the training seed, so an int8 version is shuffled exactly like its fp32 base and the
# two importances differ only by what quantization changed.
DEFAULT_SEED = 0
# Rows per onnxruntime run: many permuted copies per run amortise the per-run cost, and at this size the
# stacked inputs of a small model stay within a few tens of MB.
ROWS_PER_RUN = 16384
_SCORED_TASKS: dict[str, Task] = {"regression": "regression", "classification": "classification"}

# The first served output of a batch of test rows -> the metric on those rows.
Score = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class _Feature:
    input: str
    # Index into one row of the input, flattened in C order.
    index: int
    name: str


def measure_feature_importance(
    session: ort.InferenceSession,
    fitted: FitResult,
    *,
    task: str | None,
    metric: str | None,
    goal: MetricGoal,
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
) -> GlobalImportance | None:
    """Permutation importance of every feature on `fitted`'s test set, scored by `metric`.

    None where it does not apply (see the module docstring): no metric, no targets, a task that is not
    scored against targets, or a graph input that is not a float tensor."""
    scored_task = _SCORED_TASKS.get(task or "")
    targets = fitted.test_targets
    inputs = fitted.test_inputs
    if scored_task is None or metric is None or targets is None or not inputs:
        return None
    if any(array.dtype.kind != "f" for array in inputs.values()):
        return None
    score = direct_metric(scored_task, metric, targets) or _evaluated_metric(
        scored_task, metric, targets, fitted.details.labels
    )
    return permutation_importance(
        session, inputs, score, metric=metric, goal=goal, repeats=repeats, seed=seed
    )


def direct_metric(task: Task, metric: str, targets: np.ndarray) -> Score | None:
    """`evaluate`'s definition of `metric` as plain numpy, for the metrics recipes use as primary.

    Around one line of arithmetic, `evaluate` runs scikit-learn's input validation and computes every
    other metric of the task too: about 10 ms a call for a classifier, which over 64 features shuffled
    5 times each cost more than the onnxruntime runs. A test holds these to `evaluate`'s values."""
    if task == "classification" and metric == "accuracy":
        return lambda served: float(np.mean(np.argmax(served, axis=1) == targets))
    if task == "regression" and metric in ("mse", "mae"):
        want = targets.astype(np.float64).reshape(len(targets), -1)
        error = np.square if metric == "mse" else np.abs

        def regression_error(served: np.ndarray) -> float:
            got = served.astype(np.float64).reshape(len(served), -1)
            # Per output, then averaged over outputs: scikit-learn's uniform_average.
            return float(np.mean(np.mean(error(want - got), axis=0)))

        return regression_error
    return None


def _evaluated_metric(task: Task, metric: str, targets: np.ndarray, labels: Sequence[str] | None) -> Score:
    def score(served: np.ndarray) -> float:
        metrics, _ = evaluate(task, served, targets=targets, labels=labels)
        return metrics[metric]

    return score


def permutation_importance(
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    score: Score,
    *,
    metric: str,
    goal: MetricGoal,
    repeats: int = DEFAULT_REPEATS,
    seed: int = DEFAULT_SEED,
    rows_per_run: int = ROWS_PER_RUN,
) -> GlobalImportance:
    """Shuffle each feature's column across the rows `repeats` times and re-score the session's output.

    Importance is the mean worsening of the metric over the repeats (positive: the model relies on the
    feature), std their population standard deviation.

    Only the rows a shuffle changes are run, many shuffles stacked into one onnxruntime run; every other
    row keeps its unshuffled output. That is exact because a row's output depends on that row only, which
    batched serving assumes too, and it skips most of an image's border pixels, where a shuffle swaps one
    0 for another. A column holding one value is never changed, so its importance is 0 without a run."""
    if repeats < 1:
        raise ValueError(f"repeats: expected an integer >= 1, got {repeats}")
    count = _row_count(inputs)
    unshuffled = onnx_outputs(session, inputs)[0]
    baseline = score(unshuffled)
    features = list(_features(inputs))
    # A shuffle that changes no row reads exactly as unshuffled: it worsens nothing and is never run.
    worsening = np.zeros((len(features), repeats), dtype=np.float64)
    shuffles = _shuffles(inputs, features, repeats, np.random.default_rng(seed))
    for batch in _batches(shuffles, rows_per_run):
        for item, outputs in _served_shuffles(session, inputs, batch, unshuffled):
            worsening[item.position, item.repeat] = degradation(score(outputs), baseline, goal)
    ranked = [
        FeatureImportance(feature=feature.name, importance=float(np.mean(row)), std=float(np.std(row)))
        for feature, row in zip(features, worsening, strict=True)
    ]
    # Stable, so equally important features keep their input order.
    ranked.sort(key=lambda item: -item.importance)
    return GlobalImportance(
        metric=metric,
        goal=goal,
        baseline_value=baseline,
        repeats=repeats,
        seed=seed,
        samples=count,
        features=ranked,
    )


@dataclass(frozen=True, eq=False)
class _Shuffle:
    """One repeat of one feature's shuffle: the rows it changes and the values they get."""

    position: int
    repeat: int
    feature: _Feature
    rows: np.ndarray
    values: np.ndarray


def _shuffles(
    inputs: Mapping[str, np.ndarray], features: Sequence[_Feature], repeats: int, rng: np.random.Generator
) -> Iterator[_Shuffle]:
    """Every feature's shuffles in order, each with only the rows whose value it changes."""
    for position, feature in enumerate(features):
        column = _column(inputs, feature)
        for repeat in range(repeats):
            shuffled = column[rng.permutation(len(column))]
            # NaN != NaN, so a row holding NaN always counts as changed and is run like any other.
            rows = np.flatnonzero(shuffled != column)
            if len(rows):
                yield _Shuffle(position, repeat, feature, rows, shuffled[rows])


def _batches(shuffles: Iterable[_Shuffle], rows_per_run: int) -> Iterator[list[_Shuffle]]:
    """Consecutive shuffles grouped until their changed rows reach `rows_per_run`."""
    batch: list[_Shuffle] = []
    rows = 0
    for item in shuffles:
        batch.append(item)
        rows += len(item.rows)
        if rows >= rows_per_run:
            yield batch
            batch, rows = [], 0
    if batch:
        yield batch


def _served_shuffles(
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    shuffles: Sequence[_Shuffle],
    unshuffled: np.ndarray,
) -> Iterator[tuple[_Shuffle, np.ndarray]]:
    """Each shuffle with the first output over all the test rows, its changed rows run in one batch."""
    stacked = {
        name: np.concatenate([array[item.rows] for item in shuffles]) for name, array in inputs.items()
    }
    bounds = np.cumsum([0, *(len(item.rows) for item in shuffles)])
    total = int(bounds[-1])
    # Reshapes of freshly concatenated (contiguous) arrays are views, so writing to them edits `stacked`.
    rows_of = {name: array.reshape(total, -1) for name, array in stacked.items()}
    for item, start, end in zip(shuffles, bounds[:-1], bounds[1:], strict=True):
        rows_of[item.feature.input][start:end, item.feature.index] = item.values
    served = onnx_outputs(session, stacked, batch_size=total)[0]
    for item, start, end in zip(shuffles, bounds[:-1], bounds[1:], strict=True):
        outputs = unshuffled.copy()
        outputs[item.rows] = served[start:end]
        yield item, outputs


def _row_count(inputs: Mapping[str, np.ndarray]) -> int:
    counts = {name: len(array) for name, array in inputs.items()}
    if not counts or len(set(counts.values())) != 1 or min(counts.values()) < 1:
        raise ValueError(f"inputs: expected the same number (>= 1) of rows in each input, got {counts}")
    return next(iter(counts.values()))


def _features(inputs: Mapping[str, np.ndarray]) -> Iterator[_Feature]:
    for name, array in inputs.items():
        row_shape = array.shape[1:]
        for index in range(int(np.prod(row_shape, dtype=np.int64))):
            position = np.unravel_index(index, row_shape)
            # A scalar row (an input of shape [-1]) is a single feature named by its input.
            label = f"{name}[{','.join(str(int(i)) for i in position)}]" if row_shape else name
            yield _Feature(input=name, index=index, name=label)


def _column(inputs: Mapping[str, np.ndarray], feature: _Feature) -> np.ndarray:
    array = inputs[feature.input]
    return array.reshape(len(array), -1)[:, feature.index]
