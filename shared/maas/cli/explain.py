"""`maas explain REF --input FILE`: which input features a model's answer rests on, as a table per row and,
for image inputs, a PNG heatmap.

The explanation runs in-process through InferenceService.explain, with the same code, parameters and limits
(MAAS_EXPLAIN_MAX_EVALS, MAAS_REQUEST_TIMEOUT) as the /explain route, against the registry the other
commands use: no API is needed. This module reads the arguments and runs the explanation; the response is
read back and rendered by maas.cli.explanation_report. Never imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.cli import common
from maas.cli.explanation_report import DEFAULT_TOP, explain_response, render_explanation, write_heatmaps

if TYPE_CHECKING:
    from maas.infer_types import InferenceResponse
    from maas.registry import Manifest
    from maas.service.inference import InferenceService

# maas.explain.parameters.Method and NamedBaseline, spelled out so building the parser imports no pydantic;
# tests/functional/cli/test_explain_command.py keeps them equal.
METHODS = ("ablation", "occlusion", "shapley")
NAMED_BASELINES = ("zeros", "mean", "mask", "pad")
DEFAULT_PNG = Path("explanation.png")
STDIN = "-"


def add_explain_command(commands: common.Commands, output: argparse.ArgumentParser) -> None:
    explain = commands.add_parser(
        "explain",
        parents=[output],
        help="explain a model's answer: each input feature's attribution, as a table (and a PNG for images)",
        description="Run a V2 request through a model's explanation, in-process against the registry, and "
        "print per row the prediction and the features sorted by |attribution|. Options override the "
        "request's own `parameters`. Image inputs (two or more dimensions longer than 1 per row) also get a "
        "PNG: the input in grey beside its attribution heatmap.",
    )
    common.add_model_reference(explain, "ref")
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
