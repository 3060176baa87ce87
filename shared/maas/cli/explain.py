"""`maas explain REF --input FILE`: which input features a model's answer rests on, as a table per row and,
for image inputs, a PNG heatmap.

The explanation runs in-process through InferenceService.explain, with the same code, parameters and limits
(MAAS_EXPLAIN_MAX_EVALS, MAAS_REQUEST_TIMEOUT) as the /explain route, against the registry the other
commands use: no API is needed. Never imports torch; matplotlib only when a heatmap is drawn.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.cli import common

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from maas.infer_types import InferenceResponse, Tensor
    from maas.registry import Manifest
    from maas.service.inference import InferenceService

# maas.explain.parameters.Method and NamedBaseline, spelled out so building the parser imports no pydantic;
# tests/cli/test_explain_command.py keeps them equal.
METHODS = ("ablation", "occlusion", "shapley")
NAMED_BASELINES = ("zeros", "mean", "mask", "pad")
DEFAULT_TOP = 15
DEFAULT_PNG = Path("explanation.png")
STDIN = "-"
# The widest bar, drawn for the row's largest |attribution|; the others are scaled to it.
BAR_WIDTH = 20
# maas.explain.explainer's response names, repeated here so the table needs no explain import.
EXPLANATION = "explanation"
ATTRIBUTION_SUFFIX = "_attribution"
TOKENS_SUFFIX = "_tokens"
PANEL_SIZE_IN = 3.0
PNG_DPI = 100
# matplotlib otherwise stamps its version into the PNG; the bytes should depend on the data only.
PNG_METADATA: dict[str, str | None] = {"Software": None}

if TYPE_CHECKING:
    FloatArray = npt.NDArray[np.float64]


def add_explain_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], output: argparse.ArgumentParser
) -> None:
    explain = commands.add_parser(
        "explain",
        parents=[output],
        help="explain a model's answer: each input feature's attribution, as a table (and a PNG for images)",
        description="Run a V2 request through a model's explanation, in-process against the registry, and "
        "print per row the prediction and the features sorted by |attribution|. Options override the "
        "request's own `parameters`. Image inputs (two or more dimensions longer than 1 per row) also get a "
        "PNG: the input in grey beside its attribution heatmap.",
    )
    explain.add_argument(
        "ref", metavar="REF", help="name, name@alias, name/versions/<n> or name/versions/<alias>"
    )
    explain.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help='a V2 inference request body as JSON: {"inputs": [...], "parameters": {...}}; - reads stdin',
    )
    explain.add_argument(
        "--method",
        choices=METHODS,
        help="ablation: one feature at a time (default); occlusion: sliding windows (needs --window); "
        "shapley: sampled Shapley values",
    )
    explain.add_argument(
        "--target",
        type=_target,
        metavar="INDEX|LABEL",
        help="the output index (a number) or class label explained, for every row "
        "(default: the predicted class, or index 0 of a one-value output)",
    )
    explain.add_argument(
        "--baseline",
        type=_baseline,
        metavar="NAME|NUMBER",
        help="what an absent feature becomes: zeros (default), mean (the training mean), a number, "
        "or for text mask or pad",
    )
    explain.add_argument(
        "--n-samples", type=_at_least(1), metavar="N", help="shapley: permutations sampled (default: 25)"
    )
    explain.add_argument("--seed", type=_at_least(0), metavar="N", help="shapley: seeds the permutations")
    explain.add_argument(
        "--exact",
        action="store_true",
        default=None,
        help="shapley: every permutation instead of samples (at most 6 feature groups)",
    )
    explain.add_argument(
        "--window",
        type=_sizes,
        metavar="N[,N...]",
        help="occlusion: the window over a row's last dimensions; one number is a square over the last two",
    )
    explain.add_argument(
        "--stride", type=_sizes, metavar="N[,N...]", help="occlusion: the window's step (default: 1)"
    )
    explain.add_argument(
        "--top",
        type=_at_least(1),
        default=DEFAULT_TOP,
        metavar="N",
        help=f"features shown per row (default: {DEFAULT_TOP})",
    )
    explain.add_argument(
        "--png",
        type=Path,
        metavar="PATH",
        help=f"image inputs: where the heatmap goes (default: {DEFAULT_PNG}, and not with --json); "
        "several rows get one file each, <stem>-<row>.png",
    )
    explain.set_defaults(command=explain_command)


def explain_command(args: argparse.Namespace) -> int:
    from maas.config import Settings
    from maas.errors import InvalidInput
    from maas.protocol.explain_codec import decode_explain_parameters
    from maas.protocol.tensor_codec import TensorLimits
    from maas.protocol.v2_codec import decode_infer_request, encode_infer_response
    from maas.registry.references import parse_ref
    from maas.service.inference import InferenceService

    ref = parse_ref(args.ref)
    body = _read_input(args.input)
    settings = Settings.from_env()
    try:
        decoded = decode_infer_request(body, TensorLimits.from_settings(settings))
    except InvalidInput as exc:
        raise InvalidInput(f"--input {args.input}: {exc.message}") from None
    parameters = {**decoded.request.parameters, **_overrides(args)}
    explain_parameters = decode_explain_parameters(parameters)
    request = dataclasses.replace(decoded.request, parameters=parameters)
    service = InferenceService.from_settings(settings)
    with _service_logs_on_stderr():
        response = service.explain(ref, request, explain_parameters)

    inputs = {tensor.name: tensor.array for tensor in request.inputs}
    explanation = explain_response(response, inputs, _manifest(service, response))
    if args.json:
        print(encode_infer_response(response).content.decode())
    else:
        print(render_explanation(explanation, args.top))
    png = args.png if args.png is not None or args.json else DEFAULT_PNG
    if png is None:
        return 0
    note = sys.stderr if args.json else sys.stdout
    if not explanation.images:
        if args.png is not None:
            print("# --png: no image input (two or more dimensions longer than 1), no heatmap", file=note)
        return 0
    for path in write_heatmaps(explanation, png):
        print(f"heatmap: {path}", file=note)
    return 0


# ---- what the response says, row by row (pure)


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


# ---- arguments


def _read_input(source: str) -> bytes:
    from maas.errors import InvalidInput, NotFound

    if source == STDIN:
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise NotFound(
            f"--input: expected a JSON file holding a V2 request body, got {source!r} (no such file)"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"--input: cannot read {source!r}: {exc.strerror}") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "method": args.method,
        "target": args.target,
        "baseline": args.baseline,
        "n_samples": args.n_samples,
        "seed": args.seed,
        "exact": args.exact,
        "window": args.window,
        "stride": args.stride,
    }
    return {name: value for name, value in given.items() if value is not None}


@contextmanager
def _service_logs_on_stderr() -> Iterator[None]:
    """The service logs each model load as a JSON line on stdout, which is CloudWatch's stream in Lambda;
    here it would break the table and `--json | jq`, so while the command runs, warnings only, on stderr."""
    import logging

    from maas.observability import logger

    service_logger = logging.getLogger(logger.name)
    level = service_logger.level
    handlers = [
        handler
        for handler in service_logger.handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__)
    ]
    previous = [handler.setStream(sys.stderr) for handler in handlers]
    service_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        service_logger.setLevel(level)
        for handler, stream in zip(handlers, previous, strict=True):
            if stream is not None:
                handler.setStream(stream)


def _manifest(service: InferenceService, response: InferenceResponse) -> Manifest:
    loaded = service.cache.peek(response.model_name, response.model_version)
    if loaded is not None:
        return loaded.manifest
    return service.registry.manifest(response.model_name, response.model_version)


def _target(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _baseline(text: str) -> str | int | float:
    if text in NAMED_BASELINES:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(NAMED_BASELINES)} or a finite number, got {text!r}"
        )
    return number


def _sizes(text: str) -> int | list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size or comma-separated sizes such as 2 or 1,3, got {text!r}"
        ) from None
    return sizes[0] if len(sizes) == 1 else sizes


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return number

    return parse
