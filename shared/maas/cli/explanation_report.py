"""The `maas explain` command's output: an explain response read back as rows of named features sorted by
|attribution|, rendered as a text table, and, for image inputs, drawn as PNG heatmaps.

Everything but the heatmaps is pure. Never imports torch; numpy only when called; matplotlib only when a
heatmap is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.cli import common
from maas.explain.parameters import ATTRIBUTION_SUFFIX, EXPLANATION, TOKENS_SUFFIX

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from maas.infer_types import InferenceResponse, Tensor
    from maas.registry import Manifest

    FloatArray = npt.NDArray[np.float64]

DEFAULT_TOP = 15
# The widest bar, drawn for the row's largest |attribution|; the others are scaled to it.
BAR_WIDTH = 20
PANEL_SIZE_IN = 3.0
PNG_DPI = 100
# matplotlib otherwise stamps its version into the PNG; the bytes should depend on the data only.
PNG_METADATA: dict[str, str | None] = {"Software": None}


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    value: str
    attribution: float


@dataclass(frozen=True, slots=True)
class Heatmap:
    """One image input of one row, reduced to a plane: the input, and its attribution."""

    input: str
    image: FloatArray
    attribution: FloatArray


@dataclass(frozen=True, slots=True)
class RowExplanation:
    row: int
    summary: str
    features: list[Feature]
    text: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    model: str
    heading: str
    rows: list[RowExplanation]
    # Per row, one Heatmap per image input; empty when no input is image-like.
    images: list[list[Heatmap]]


def explain_response(
    response: InferenceResponse, inputs: dict[str, npt.NDArray[Any]], manifest: Manifest
) -> Explanation:
    """The response's attributions as readable rows: features named and sorted by |attribution|."""
    import numpy as np

    settings: dict[str, Any] = response.parameters[EXPLANATION]
    outputs = {tensor.name: tensor for tensor in response.outputs}
    attributed = [name for name in settings["attributions"] if name.endswith(ATTRIBUTION_SUFFIX)]
    targets: list[int] = settings["target"]
    explained = outputs.get(settings["output"])
    classifier = bool(manifest.labels) or manifest.task == "classification"
    rows: list[RowExplanation] = []
    images: list[list[Heatmap]] = []
    for row, target in enumerate(targets):
        summary = _row_summary(
            row,
            target,
            explained=explained,
            output=settings["output"],
            labels=manifest.labels,
            classifier=classifier,
        )
        features: list[Feature] = []
        heatmaps: list[Heatmap] = []
        text = False
        for name in attributed:
            source = name[: -len(ATTRIBUTION_SUFFIX)]
            scores = np.asarray(outputs[name].array[row], dtype=np.float64)
            tokens = outputs.get(source + TOKENS_SUFFIX)
            if tokens is not None:
                text = True
                features += _token_features(tokens.array[row], scores)
                continue
            values = np.asarray(inputs[source][row])
            features += _tensor_features(source, values, scores)
            plane = _image_plane(values, scores)
            if plane is not None:
                heatmaps.append(Heatmap(source, *plane))
        order = sorted(range(len(features)), key=lambda i: -abs(features[i].attribution))
        rows.append(RowExplanation(row, summary, [features[i] for i in order], text))
        images.append(heatmaps)
    model = f"{response.model_name} v{response.model_version}"
    return Explanation(model, f"{model}: {_describe_settings(settings)}", rows, images if any(images) else [])


def render_explanation(explanation: Explanation, top: int = DEFAULT_TOP) -> str:
    blocks = [explanation.heading]
    for row in explanation.rows:
        shown = row.features[:top]
        scale = max((abs(feature.attribution) for feature in row.features), default=0.0)
        header = ("TOKEN", "POSITION") if row.text else ("FEATURE", "VALUE")
        lines: list[tuple[str, ...]] = [(*header, "ATTRIBUTION", "")]
        lines += [
            (feature.name, feature.value, f"{feature.attribution:+.4g}", _bar(feature.attribution, scale))
            for feature in shown
        ]
        block = [row.summary, *("  " + line for line in common.table(lines).splitlines())]
        if len(shown) < len(row.features):
            block.append(f"  ({len(shown)} of {len(row.features)} features; --top N shows more)")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)


def _row_summary(
    row: int,
    target: int,
    *,
    explained: Tensor | None,
    output: str,
    labels: list[str] | None,
    classifier: bool,
) -> str:
    import numpy as np

    scores = None if explained is None else np.asarray(explained.array[row], dtype=np.float64).reshape(-1)
    if not classifier or scores is None or scores.size < 2:
        value = "" if scores is None else f" = {scores[target]:.4g}"
        return f"row {row}: target {output}[{target}]{value}"
    predicted = int(np.argmax(scores))
    return (
        f"row {row}: target {_label(target, labels)} (index {target}, score {scores[target]:.4g}); "
        f"predicted {_label(predicted, labels)} (score {scores[predicted]:.4g})"
    )


def _label(index: int, labels: list[str] | None) -> str:
    return repr(labels[index]) if labels and index < len(labels) else str(index)


def _describe_settings(settings: dict[str, Any]) -> str:
    method = settings["method"]
    details: list[str] = []
    if method == "occlusion":
        details.append(f"window {settings['window']}, stride {settings['stride']}")
    elif method == "shapley":
        exact = settings.get("exact")
        details.append("exact" if exact else f"{settings['n_samples']} samples, seed {settings['seed']}")
    parts = [f"{method} ({', '.join(details)})" if details else method]
    parts.append(f"baseline {settings['baseline']}")
    parts.append(f"{settings['evaluations']:,} evaluations")
    return ", ".join(parts)


def _tensor_features(name: str, values: npt.NDArray[Any], scores: FloatArray) -> list[Feature]:
    import numpy as np

    shape = values.shape
    flat_values = values.reshape(-1)
    features: list[Feature] = []
    for index, attribution in enumerate(scores.reshape(-1)):
        if not shape:
            label = name
        elif len(shape) == 1:
            label = f"{name}[{index}]"
        else:
            label = f"{name}[{','.join(str(int(i)) for i in np.unravel_index(index, shape))}]"
        features.append(Feature(label, _number(flat_values[index]), float(attribution)))
    return features


def _token_features(tokens: npt.NDArray[Any], scores: FloatArray) -> list[Feature]:
    features: list[Feature] = []
    for position, (token, attribution) in enumerate(zip(tokens.tolist(), scores.tolist(), strict=True)):
        text = token.decode("utf-8", "replace") if isinstance(token, bytes) else str(token)
        if text:  # the explainer pads shorter texts' rows with ""
            features.append(Feature(text, str(position), float(attribution)))
    return features


def _image_plane(values: npt.NDArray[Any], scores: FloatArray) -> tuple[FloatArray, FloatArray] | None:
    """An image-like row as a 2-D plane: leading dimensions (channels-first, as PyTorch lays images out)
    are averaged for the picture and summed for the attribution. None for a row that is no image."""
    import numpy as np

    if values.dtype.kind not in "biuf" or sum(size > 1 for size in values.shape) < 2:
        return None
    kept = [size for size in values.shape if size > 1]
    image = values.astype(np.float64).reshape(kept)
    attribution = scores.reshape(kept)
    leading = tuple(range(len(kept) - 2))
    return image.mean(axis=leading), attribution.sum(axis=leading)


def _bar(attribution: float, scale: float) -> str:
    if scale <= 0 or not math.isfinite(attribution):
        return ""
    return ("+" if attribution > 0 else "-") * round(BAR_WIDTH * abs(attribution) / scale)


def _number(value: Any) -> str:
    import numpy as np

    if isinstance(value, np.floating | float):
        return f"{float(value):.4g}"
    return str(value.item() if isinstance(value, np.generic) else value)


# ---- the heatmaps


def write_heatmaps(explanation: Explanation, path: Path) -> list[Path]:
    """One PNG per row: `path` for a single row, else <stem>-<row><suffix> beside it."""
    written: list[Path] = []
    several = len(explanation.images) > 1
    for row, heatmaps in zip(explanation.rows, explanation.images, strict=True):
        target = path.with_name(f"{path.stem}-{row.row}{path.suffix}") if several else path
        title = f"{explanation.model}, {row.summary}"
        try:
            target.write_bytes(heatmap_png(heatmaps, title))
        except OSError as exc:
            from maas.errors import InvalidInput

            raise InvalidInput(f"--png: cannot write {str(target)!r}: {exc.strerror}") from None
        written.append(target)
    return written


def heatmap_png(heatmaps: Sequence[Heatmap], title: str) -> bytes:
    """The input in grey beside its attribution (a diverging map centred at 0), per image input."""
    import io

    import numpy as np

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        from maas.errors import Unavailable

        raise Unavailable("--png: the heatmap needs matplotlib (pip install 'maas[train]')") from None

    figure = Figure(
        figsize=(2 * PANEL_SIZE_IN + 0.8, len(heatmaps) * PANEL_SIZE_IN + 0.6),
        dpi=PNG_DPI,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    panels = figure.subplots(len(heatmaps), 2, squeeze=False)
    for (picture, attributions), heatmap in zip(panels, heatmaps, strict=True):
        picture.imshow(heatmap.image, cmap="gray", interpolation="nearest")
        picture.set_title(heatmap.input, fontsize=9)
        limit = float(np.max(np.abs(heatmap.attribution))) or 1.0
        shown = attributions.imshow(
            heatmap.attribution, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        attributions.set_title("attribution", fontsize=9)
        figure.colorbar(shown, ax=attributions, shrink=0.85)
        for axes in (picture, attributions):
            axes.set_xticks([])
            axes.set_yticks([])
    figure.suptitle(title, fontsize=9, wrap=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata=PNG_METADATA)
    figure.clear()
    return buffer.getvalue()
