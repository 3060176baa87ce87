"""The PNG plots a model card links: loss and validation metric per epoch, permutation importance and the
confusion matrix, drawn with matplotlib's object-oriented API into deterministic bytes.

matplotlib is imported only when a plot is drawn, so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from maas.registry import GlobalImportance
from maas.training.history import History
from maas.training.report import TOP_FEATURES, format_number, goal_phrase

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_SIZE_IN = (5.0, 3.5)
PLOT_DPI = 100
# matplotlib otherwise stamps its version into the PNG; the bytes should depend on the data only.
PNG_METADATA: dict[str, str | None] = {"Software": None}
MAX_TICK_LABEL_CHARS = 12
MAX_ANNOTATED_CLASSES = 30
# Characters of tick labels (longest label times classes) that fit upright under a confusion plot.
SLANT_TICK_CHARS = 24
# A loss that falls by more than this factor is unreadable on a linear axis.
LOG_SCALE_RATIO = 50.0


def _new_figure(size: tuple[float, float] = PLOT_SIZE_IN) -> Figure:
    # The object-oriented API with an explicit Agg canvas: no pyplot, so no global figure registry or
    # backend switch, and a figure is freed as soon as it goes out of scope.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata=PNG_METADATA)
    figure.clear()
    return buffer.getvalue()


def _epoch_axis(axes: Axes, epochs: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    # Epochs are whole numbers; a tick at 2.5 would suggest otherwise. One epoch has no range to
    # place integer ticks in, so it gets its own.
    if len(set(epochs)) > 1:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.set_xticks(epochs)
    axes.set_xlabel("epoch")


def loss_png(history: History) -> bytes:
    epochs = [r.epoch for r in history.epochs]
    train = [r.train_loss for r in history.epochs]
    val = [r.val_loss for r in history.epochs]
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(epochs, train, marker="o", markersize=3, label="train")
    axes.plot(epochs, val, marker="o", markersize=3, label="validation")
    if history.best_epoch in epochs:
        best = history.best_epoch
        axes.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best})")
    finite = [v for v in train + val if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > LOG_SCALE_RATIO:
        axes.set_yscale("log")
    _epoch_axis(axes, epochs)
    axes.set_ylabel("loss")
    axes.set_title("Loss per epoch")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def metric_png(history: History) -> bytes:
    epochs = [r.epoch for r in history.epochs]
    values = [r.val_metric for r in history.epochs]
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(
        epochs, values, marker="o", markersize=3, color="tab:green", label=f"validation {history.metric_name}"
    )
    if history.best_epoch in epochs:
        best = history.best_val_metric
        axes.plot(
            [history.best_epoch],
            [best],
            marker="*",
            markersize=14,
            color="tab:red",
            linestyle="none",
            label=f"best: epoch {history.best_epoch}, {format_number(best)}",
        )
    _epoch_axis(axes, epochs)
    axes.set_ylabel(history.metric_name)
    axes.set_title(f"Validation {history.metric_name} ({goal_phrase(history.metric_goal)})")
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def importance_png(importance: GlobalImportance) -> bytes:
    shown = importance.features[:TOP_FEATURES]
    figure = _new_figure((PLOT_SIZE_IN[0], max(2.5, 0.28 * len(shown) + 1.3)))
    axes = figure.add_subplot()
    positions = range(len(shown))
    axes.barh(
        positions,
        [item.importance for item in shown],
        xerr=[item.std for item in shown],
        color="tab:blue",
        ecolor="black",
        capsize=2,
    )
    axes.set_yticks(positions, [item.feature for item in shown])
    # Most important at the top, as the card's table reads.
    axes.invert_yaxis()
    axes.axvline(0.0, color="grey", linewidth=0.8)
    worse = "increase" if importance.goal == "minimize" else "decrease"
    axes.set_xlabel(f"{worse} in test {importance.metric} when shuffled (± std)")
    count = len(importance.features)
    scope = f"top {len(shown)} of {count}" if len(shown) < count else "test set"
    axes.set_title(f"Permutation importance ({scope})")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def confusion_png(labels: list[str], matrix: list[list[int]]) -> bytes:
    import numpy as np

    counts = np.asarray(matrix, dtype=np.int64)
    n = len(labels)
    # Colour by the share of each true class so a rare class's errors stay visible; the text is the count.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    side = min(10.0, max(4.0, 0.3 * n + 1.5))
    figure = _new_figure((side + 0.9, side))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of true class")
    ticks = [
        label if len(label) <= MAX_TICK_LABEL_CHARS else label[: MAX_TICK_LABEL_CHARS - 1] + "…"
        for label in labels
    ]
    # Upright labels collide once the row of them is wider than the axes; slanted ones do not.
    slanted = max(len(tick) for tick in ticks) * n > SLANT_TICK_CHARS
    axes.set_xticks(range(n), ticks, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    axes.set_yticks(range(n), ticks)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (test set)")
    if n <= MAX_ANNOTATED_CLASSES:
        size = 8 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                colour = "white" if shares[i, j] > 0.5 else "black"
                axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=size)
    return _png(figure)
