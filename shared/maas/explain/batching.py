"""Running perturbed rows through the model in batches, within the explanation's evaluation budget.

Every perturbation a method needs is stacked into rows and run through onnxruntime in batches of
MAAS_EXPLAIN_BATCH_ROWS, so an explanation costs a few large runs rather than one per perturbation. The
number of rows is known before anything runs, and a request over MAAS_EXPLAIN_MAX_EVALS is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.config import ENV_EXPLAIN_MAX_EVALS, Settings
from maas.errors import InvalidInput
from maas.explain.attribution import BoolArray, FloatArray, IntArray
from maas.runtime import Deadline, LoadedModel

# Elements one run's perturbed rows may hold: a large row (an image) gets fewer rows per run.
MAX_RUN_ELEMENTS = 1 << 24


@dataclass(frozen=True, slots=True)
class ExplainLimits:
    max_evaluations: int
    batch_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ExplainLimits:
        return cls(settings.explain_max_evaluations, settings.explain_batch_rows)


@dataclass(frozen=True, slots=True)
class Evaluations:
    """Where one explanation's evaluations run: the model, the output and per-row target scored."""

    model: LoadedModel
    output: str
    targets: IntArray
    limits: ExplainLimits
    deadline: Deadline | None

    def check_budget(self, needed: int, breakdown: str) -> None:
        limit = self.limits.max_evaluations
        if needed > limit:
            raise InvalidInput(
                f"parameters: this explanation needs {needed:,} model evaluations ({breakdown}), expected "
                f"at most {limit:,} ({ENV_EXPLAIN_MAX_EVALS}), {needed - limit:,} over; send fewer rows, "
                "group features with feature_mask, lower n_samples or use a larger window or stride"
            )


@dataclass(frozen=True, eq=False)
class Perturbed:
    """One graph input under perturbation: [N, E] values and baselines, and one row's shape."""

    name: str
    values: npt.NDArray[Any]
    baseline: npt.NDArray[Any]
    row_shape: tuple[int, ...]
    # The graph's batch dimension: -1 when any, else the exact number of rows each run must have.
    graph_batch: int


def evaluate(
    evaluations: Evaluations,
    perturbed: Sequence[Perturbed],
    fixed: dict[str, npt.NDArray[Any]],
    *,
    row_of_job: IntArray,
    masks_of_jobs: Callable[[IntArray], BoolArray],
    max_rows: int | None = None,
) -> tuple[FloatArray, int]:
    """The target score of every job (a request row under one mask), and the number of runs it took.

    `max_rows` caps the rows of one run further (a text model's, by the tokens one run may take)."""
    total = len(row_of_job)
    graph_batch = perturbed[0].graph_batch
    chunk = graph_batch if graph_batch > 0 else _rows_per_run(evaluations.limits, perturbed, max_rows)
    scores = np.empty(total, dtype=np.float64)
    runs = 0
    for start in range(0, total, chunk):
        jobs = np.arange(start, min(start + chunk, total))
        rows = row_of_job[jobs]
        feeds = _mixed_feeds(perturbed, fixed, rows, masks_of_jobs(jobs))
        if graph_batch > 0 and len(jobs) < graph_batch:
            # A graph with a fixed batch size gets full runs; the padding rows' scores are dropped.
            feeds = {name: _pad_rows(array, graph_batch) for name, array in feeds.items()}
        (output,) = evaluations.model.run_graph(feeds, [evaluations.output], deadline=evaluations.deadline)
        runs += 1
        if output.ndim == 0 or output.shape[0] != max(len(jobs), graph_batch):
            raise InvalidInput(
                f"parameters.output: '{evaluations.output[:64]}' answered {list(output.shape)} for "
                f"{max(len(jobs), graph_batch)} rows; explanations need one output row per input row"
            )
        flat = output.reshape(output.shape[0], -1)[: len(jobs)].astype(np.float64)
        scores[jobs] = flat[np.arange(len(jobs)), evaluations.targets[rows]]
    return scores, runs


def _rows_per_run(limits: ExplainLimits, perturbed: Sequence[Perturbed], max_rows: int | None) -> int:
    row_elements: int = max(sum(item.values.shape[1] for item in perturbed), 1)
    return min(
        limits.batch_rows,
        max(1, MAX_RUN_ELEMENTS // row_elements),
        max_rows if max_rows is not None else limits.batch_rows,
    )


def _mixed_feeds(
    perturbed: Sequence[Perturbed], fixed: dict[str, npt.NDArray[Any]], rows: IntArray, masks: BoolArray
) -> dict[str, npt.NDArray[Any]]:
    """One run's feeds: each job's row with its masked elements taken from the baseline."""
    feeds: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for item in perturbed:
        width = item.values.shape[1]
        own = masks[:, offset : offset + width]
        offset += width
        mixed = np.where(own, item.baseline[rows], item.values[rows])
        feeds[item.name] = mixed.reshape(len(rows), *item.row_shape)
    for name, values in fixed.items():
        feeds[name] = values[rows]
    return feeds


def _pad_rows(array: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    return np.concatenate([array, np.repeat(array[-1:], rows - len(array), axis=0)])
